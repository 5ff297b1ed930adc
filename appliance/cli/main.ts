#!/usr/bin/env node
/**
 * The `snapback` command line (commands and flags: program.ts). A bad argument prints one clear
 * line and exits 2; a failed operation exits 1; `verify` exits 1 when it finds a difference the
 * write log does not cover.
 */
import { CommanderError } from 'commander';
import { SnapbackError } from '../errors.js';
import { buildProgram, type CliRun } from './program.js';

async function main(argv: string[]): Promise<number> {
  const run: CliRun = { exitCode: 0 };
  try {
    await buildProgram(run).parseAsync(argv, { from: 'user' });
    return run.exitCode;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    // help and version print and exit 0; help shown because a command is missing exits 2
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return err.exitCode === 0 ? 0 : 2;
    throw new SnapbackError('BAD_ARGUMENT', err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' '));
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof SnapbackError) {
      process.stderr.write(`snapback: ${err.message}\n`);
      process.exitCode = err.code === 'BAD_ARGUMENT' ? 2 : 1;
    } else {
      process.stderr.write(`snapback: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
