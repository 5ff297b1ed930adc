// The suite runs its test files in parallel processes, longest first, so that the longest files
// (the VM rigs, the crash test) start at once and the short ones fill in around them; the two
// kernel-VM files, which take turns (test/rigs/vm-slot.ts), are spread apart.
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
const jobs = Number(process.env.SNAPBACK_TEST_JOBS ?? 3);

// Files whose guests take the one kernel-VM slot (test/rigs/vm-slot.ts): two of them never run
// at once, so a worker handed the second while the first runs would only wait.
const KERNEL_VM_FILES = new Set(['integration/gadget-vm.test.js', 'integration/appliance-image.test.js']);

/**
 * The order mocha hands files to its workers: a list schedule simulated with the known times,
 * longest first, a kernel-VM file only once the previous one should have finished.
 */
function schedule(files) {
  const left = [...files].sort().sort((a, b) => timeOf(b) - timeOf(a));
  const free = Array(jobs).fill(0);
  let slotFreeAt = 0;
  const order = [];
  while (left.length > 0) {
    const now = Math.min(...free);
    const worker = free.indexOf(now);
    const isVm = (f) => KERNEL_VM_FILES.has(path.relative(testDir, f));
    let i = left.findIndex((f) => !isVm(f) || slotFreeAt <= now);
    if (i < 0) i = 0;
    const file = left.splice(i, 1)[0];
    const start = isVm(file) ? Math.max(now, slotFreeAt) : now;
    free[worker] = start + timeOf(file);
    if (isVm(file)) slotFreeAt = free[worker];
    order.push(file);
  }
  return order;
}

const spec = schedule(testFiles(testDir)).map((f) => path.relative(root, f));

module.exports = {
  spec,
  parallel: true,
  // Most files wait on VMs, daemons, browsers and fsync rather than compute: three processes
  // keep two cores busy.
  jobs,
  require: ['./test/setup/file-times.cjs'],
  timeout: 120000,
  reporter: './test/setup/summary-reporter.cjs',
  exit: true,
};
