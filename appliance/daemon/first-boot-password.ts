/**
 * The administrator password given when the SD card was flashed: a file on the boot partition
 * (default /boot/firmware/snapback-password) holding the password on its first line. The daemon
 * sets it (scrypt, as every password) and deletes the file, so the plain text does not stay on
 * a partition anyone with the card can read. Putting the file there again resets a forgotten
 * password. The password itself is never logged.
 */
import { readFile, rm } from 'node:fs/promises';
import { hashPassword } from '../http/passwords.js';
import { newPasswordSchema } from '../api/password.js';
import { formatZodIssues } from '../zod-issues.js';
import type { StateStore } from '../state/state-store.js';
import { childLogger } from '../logger.js';

const log = childLogger('daemon');

export const DEFAULT_FIRST_BOOT_PASSWORD_FILE = '/boot/firmware/snapback-password';

/**
 * Sets the administrator password from `file` when it exists, then deletes the file. Returns
 * what happened; a file whose password is unusable is deleted too (and the reason logged).
 */
export async function consumeFirstBootPassword(file: string, store: StateStore): Promise<'set' | 'rejected' | 'none'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    log.error({ file, errno: (err as NodeJS.ErrnoException).code }, 'cannot read the first-boot password file');
    return 'rejected';
  }
  const checked = newPasswordSchema.safeParse((text.split(/\r?\n/)[0] ?? '').trim());
  let outcome: 'set' | 'rejected' = 'rejected';
  if (!checked.success) {
    log.error({ file }, `the first-boot password file holds no usable password (${formatZodIssues(checked.error, 'password')}); it was not used`);
  } else {
    await store.setAdminPasswordHash(await hashPassword(checked.data));
    await store.audit({ actor: 'system', action: 'auth.password-set', details: { from: file } }).catch((err: unknown) => log.error({ err }, 'audit write failed'));
    outcome = 'set';
  }
  try {
    await rm(file, { force: true });
    log.info({ file, outcome }, outcome === 'set' ? 'administrator password set from the first-boot file; the file was deleted' : 'the first-boot password file was deleted');
  } catch (err) {
    log.error({ file, errno: (err as NodeJS.ErrnoException).code }, 'cannot delete the first-boot password file: delete it by hand');
  }
  return outcome;
}
