/**
 * Reading a password for `snapback passwd`: typed twice on the terminal with nothing echoed, or
 * one line from stdin (--password-stdin, for scripts and provisioning).
 */
import { SnapbackError } from '../errors.js';

const bad = (msg: string): never => {
  throw new SnapbackError('BAD_ARGUMENT', msg);
};

/** All of stdin as one line; a single trailing newline is dropped. */
export async function readPasswordFromStdin(input: NodeJS.ReadStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  if (/[\r\n]/.test(text)) bad('--password-stdin takes the password on one line');
  return text;
}

/**
 * Shows each prompt on `output` and reads one line per prompt from the terminal in raw mode,
 * echoing nothing. Backspace deletes; Ctrl-C or Ctrl-D on an empty line cancels.
 */
export function readHiddenLines(prompts: readonly string[], input: NodeJS.ReadStream = process.stdin, output: NodeJS.WritableStream = process.stderr): Promise<string[]> {
  if (!input.isTTY) bad('stdin is not a terminal: give the password with --password-stdin');
  return new Promise((resolve, reject) => {
    const lines: string[] = [];
    let current = '';
    const finish = (err: Error | null): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      if (err) reject(err);
      else resolve(lines);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || (ch === '\u0004' && current !== '')) {
          output.write('\n');
          lines.push(current);
          current = '';
          if (lines.length === prompts.length) return finish(null);
          output.write(prompts[lines.length]!);
        } else if (ch === '\u0003' || ch === '\u0004') {
          output.write('\n');
          return finish(new SnapbackError('BAD_ARGUMENT', 'cancelled; the password is unchanged'));
        } else if (ch === '\u007f' || ch === '\b') {
          current = Array.from(current).slice(0, -1).join('');
        } else if (ch >= ' ') {
          current += ch;
        }
      }
    };
    input.setRawMode(true);
    input.setEncoding('utf8');
    input.on('data', onData);
    input.resume();
    output.write(prompts[0] ?? '');
  });
}

/** The new password: from stdin, or typed twice on the terminal (the two must match). */
export async function readNewPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin) return readPasswordFromStdin();
  const [first, second] = await readHiddenLines(['New administrator password: ', 'Repeat it: ']);
  if (first !== second) bad('the two passwords differ; the password is unchanged');
  return first!;
}
