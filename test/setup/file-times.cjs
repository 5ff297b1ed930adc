// Records each test file's wall time and CPU time, hooks included, when SNAPBACK_TEST_TIMES
// names a file: one line "<wall seconds> <cpu seconds> <file>" per test file, the CPU time
// counting the processes the file started and waited for (VMs, daemons, clients). In parallel
// mode (.mocharc.cjs) root hooks run once per file. The suite's order comes from these lines.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const out = process.env.SNAPBACK_TEST_TIMES;
const ticksPerSecond = 100; // USER_HZ on Linux

/** utime + stime + cutime + cstime of this process, in seconds. */
function cpuSeconds() {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime..cstime are fields 14..17
  return fields.slice(11, 15).reduce((a, b) => a + Number(b), 0) / ticksPerSecond;
}

let started = 0;
let cpuAtStart = 0;

exports.mochaHooks = out && os.platform() === 'linux'
  ? {
      beforeAll() {
        started = Date.now();
        cpuAtStart = cpuSeconds();
      },
      afterAll() {
        const files = new Set();
        for (const s of this.test.parent.suites) if (s.file) files.add(path.relative(path.join(process.cwd(), 'dist', 'test'), s.file));
        const wall = ((Date.now() - started) / 1000).toFixed(1);
        const cpu = (cpuSeconds() - cpuAtStart).toFixed(1);
        fs.appendFileSync(out, `${wall} ${cpu} ${[...files].join(',')}\n`);
      },
    }
  : {};
