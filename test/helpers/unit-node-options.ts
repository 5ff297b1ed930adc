/**
 * The V8 options the appliance's systemd unit gives the daemon (its NODE_OPTIONS line), so that
 * tests and benchmarks that measure the daemon's memory start it as the Pi does.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The unit file in the source tree (this module runs from dist/test/helpers). */
export const UNIT_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'pi-gen', 'stage-snapback', '02-snapback', 'files', 'snapback.service');

/** The unit's NODE_OPTIONS value. */
export function unitNodeOptions(): string {
  const m = /^Environment=NODE_OPTIONS=(.*)$/m.exec(readFileSync(UNIT_FILE, 'utf8'));
  if (!m) throw new Error(`${UNIT_FILE} sets no NODE_OPTIONS`);
  return m[1]!;
}

/** Runs `fn` with process.env.NODE_OPTIONS set as the unit sets it (child processes inherit it). */
export async function withUnitNodeOptions<T>(fn: () => Promise<T>): Promise<T> {
  const before = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = unitNodeOptions();
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = before;
  }
}
