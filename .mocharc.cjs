// The suite runs its test files in parallel processes, longest first, so that the longest files
// (the VM rigs, the crash test) start at once and the short ones fill in around them.
// test/setup/file-times.txt holds each file's wall time from a measured run
// (SNAPBACK_TEST_TIMES=file npm test writes them; see test/setup/file-times.cjs); a file it does
// not list yet counts as a short one.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = __dirname;
const testDir = path.join(root, 'dist', 'test');

function testFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return testFiles(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}

function knownTimes() {
  const times = new Map();
  const file = path.join(root, 'test', 'setup', 'file-times.txt');
  if (!fs.existsSync(file)) return times;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([\d.]+)\s+\S+\s+(\S+)/.exec(line);
    if (m) times.set(m[2], Number(m[1]));
  }
  return times;
}

const times = knownTimes();
const timeOf = (f) => times.get(path.relative(testDir, f)) ?? 5;
const spec = testFiles(testDir)
  .sort()
  .sort((a, b) => timeOf(b) - timeOf(a))
  .map((f) => path.relative(root, f));

module.exports = {
  spec,
  parallel: true,
  // Most files wait on VMs, daemons, browsers and fsync rather than compute: three processes
  // keep two cores busy.
  jobs: Number(process.env.SNAPBACK_TEST_JOBS ?? 3),
  require: ['./test/setup/file-times.cjs'],
  timeout: 120000,
  reporter: './test/setup/summary-reporter.cjs',
  exit: true,
};
