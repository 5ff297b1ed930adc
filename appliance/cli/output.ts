/** What the CLI's commands print: lines on stdout, and progress bars on stderr when it is a terminal. */
import cliProgress from 'cli-progress';

export const out = (s: string): void => {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
};

export interface ProgressBar {
  update(done: number, total: number | null): void;
  stop(): void;
}

const NO_BAR: ProgressBar = { update() {}, stop() {} };

/** A bar counting `unit` (regions, …); nothing when stderr is not a terminal. */
export function progressBar(label: string, unit = 'regions'): ProgressBar {
  if (!process.stderr.isTTY) return NO_BAR;
  const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | ETA {eta}s`, stream: process.stderr }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total ?? 0, done);
        started = true;
      } else bar.update(done, total !== null ? { total } : {});
      if (total !== null) bar.setTotal(total);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/** A bar of bytes, shown in MiB. */
export function bytesBar(label: string): ProgressBar {
  const bar = progressBar(label, 'MiB');
  return {
    update: (done, total) => bar.update(Math.floor(done / 1048576), total === null ? null : Math.ceil(total / 1048576)),
    stop: () => bar.stop(),
  };
}
