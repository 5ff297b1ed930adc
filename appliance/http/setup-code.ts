/**
 * The one-time setup code that protects the first password (the pattern of Jenkins' initial
 * admin password). While no administrator password is set, the web UI listens on the network
 * from the first boot, but whoever sets the first password from another machine must give this
 * code: it is written to DIR/setup-code (mode 0600, root only) and to the daemon's log (the
 * journal), so only someone with access to the appliance can read it. Clients on the appliance
 * itself (loopback, an SSH tunnel) and the CLI need no code. The file is deleted once a password
 * is set.
 */
import { randomInt, timingSafeEqual } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import { childLogger } from '../logger.js';

const log = childLogger('http');
/** Unambiguous letters and digits (no 0/O, 1/I/L, U). */
const ALPHABET = 'ABCDEFGHJKMNPQRSTVWXYZ23456789';
const GROUPS = 4;
const GROUP_LENGTH = 4;

export class SetupCode {
  readonly path: string;
  private code: string | null = null;

  constructor(path: string) {
    this.path = path;
  }

  /** Whether a code is in force (no password yet). */
  get active(): boolean {
    return this.code !== null;
  }

  /**
   * At start: with no password yet, makes a new code, writes it (0600) and logs it; with a
   * password, removes a file left from before.
   */
  async prepare(passwordSet: boolean): Promise<void> {
    if (passwordSet) {
      await this.consume();
      return;
    }
    const code = Array.from({ length: GROUPS }, () => Array.from({ length: GROUP_LENGTH }, () => ALPHABET[randomInt(ALPHABET.length)]).join('')).join('-');
    // A fresh file, created 0600: never an old file's wider mode, never readable for a moment.
    await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    const fh = await open(this.path, 'wx', 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(`${code}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.code = code;
    log.warn(
      { setupCode: code, path: this.path },
      `no administrator password is set yet. To set it in the web UI from another machine, enter the setup code ${code} ` +
        `(also in ${this.path}); on the appliance itself, or with \`snapback passwd\`, no code is needed.`,
    );
  }

  /** Whether `given` is the code in force (case, spaces and dashes do not matter). */
  matches(given: string | undefined): boolean {
    if (this.code === null || given === undefined) return false;
    const a = Buffer.from(normalize(given));
    const b = Buffer.from(normalize(this.code));
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** The password is set: the code is spent and its file deleted. */
  async consume(): Promise<void> {
    this.code = null;
    await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') log.error({ err, path: this.path }, 'cannot delete the setup code file');
    });
  }
}

function normalize(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '');
}
