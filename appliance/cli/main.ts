#!/usr/bin/env node
/**
 * The `snapback` command line (commands and flags: program.ts). A bad argument prints one clear
 * line and exits 2; a failed operation exits 1; `verify` exits 1 when it finds a difference the
 * write log does not cover.
 */
import { type Command, CommanderError } from 'commander';
import { SnapbackError } from '../errors.js';
import { buildProgram, type CliRun } from './program.js';

/**
 * `snapback help session end` means `snapback session end --help`: commander's own help command
 * takes one word, so it would show the `session` group, and for an unknown word the whole usage
 * without saying what was wrong.
 */
function helpAsFlag(program: Command, argv: string[]): string[] {
  if (argv[0] !== 'help' || argv.length < 2) return argv;
  let cmd = program;
  for (const word of argv.slice(1)) {
    const sub = cmd.commands.find((c) => c.name() === word);
    if (!sub) throw new SnapbackError('BAD_ARGUMENT', `unknown command '${argv.slice(1).join(' ')}'; "snapback --help" lists them`);
    cmd = sub;
  }
  return [...argv.slice(1), '--help'];
}

async function main(argv: string[]): Promise<number> {
  const run: CliRun = { exitCode: 0 };
  try {
    const program = buildProgram(run);
    await program.parseAsync(helpAsFlag(program, argv), { from: 'user' });
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
