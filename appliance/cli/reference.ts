/**
 * Renders the CLI reference from the command definition (program.ts): one synopsis line per
 * command with its description below. The top-level `--help` prints it, and the README's CLI
 * block is this text (a test compares them).
 */
import type { Argument, Command, Option } from 'commander';

function valueName(flags: string): string {
  return /[<[]([^>\]]+)[>\]]/.exec(flags)?.[1] ?? 'VALUE';
}

function optionTerm(o: Option): string {
  const name = o.long ?? o.flags;
  if (!o.required && !o.optional) return name;
  return `${name} ${o.argChoices ? o.argChoices.join('|') : valueName(o.flags)}`;
}

function argumentTerm(a: Argument): string {
  const text = a.argChoices ? a.argChoices.join('|') : a.name();
  return a.required ? text : `[${text}]`;
}

function leaves(cmd: Command, path: string[]): { path: string[]; cmd: Command }[] {
  if (cmd.commands.length === 0) return [{ path, cmd }];
  return cmd.commands.flatMap((sub) => leaves(sub, [...path, sub.name()]));
}

/** `snapback init --state-dir DIR --model IMAGE ... [--restore instant|eager]` */
export function synopsis(path: string[], cmd: Command): string {
  const args = cmd.registeredArguments.map(argumentTerm);
  const opts = cmd.options.filter((o) => !o.hidden).map((o) => (o.mandatory ? optionTerm(o) : `[${optionTerm(o)}]`));
  return ['snapback', ...path, ...args, ...opts].join(' ');
}

export function renderReference(program: Command): string {
  return leaves(program, [])
    .filter(({ path }) => path.length > 0)
    .map(({ path, cmd }) => `${synopsis(path, cmd)}\n    ${cmd.description()}\n`)
    .join('');
}
