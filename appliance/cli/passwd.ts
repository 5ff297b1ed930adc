/**
 * `snapback passwd`: sets the administrator password of the web UI and API on the appliance
 * itself. While a daemon holds the state directory the password goes through its control socket
 * (the daemon keeps the state in memory and logs everyone else out); when none runs, it is
 * written straight into the state directory's state file, with the directory locked meanwhile
 * so a daemon cannot start halfway. Either way a bad password changes nothing.
 */
import { existsSync } from 'node:fs';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { newPasswordSchema } from '../api/password.js';
import { StateDir } from '../storage/state-dir.js';
import { StateStore } from '../state/state-store.js';
import { hashPassword } from '../http/passwords.js';
import { callDaemon } from './control-client.js';
import { readNewPassword } from './password-input.js';

/** Checks a new password by the API's rule; BAD_ARGUMENT names what is wrong. */
export function checkNewPassword(password: string): string {
  const r = newPasswordSchema.safeParse(password);
  if (!r.success) throw new SnapbackError('BAD_ARGUMENT', `${formatZodIssues(r.error, 'the new password')}; nothing was changed`);
  return r.data;
}

/** Where the password went: through the daemon, or into the state file. */
export type PasswordRoute = 'daemon' | 'state-file';

export async function setAdminPassword(stateDir: string, password: string): Promise<PasswordRoute> {
  const dir = new StateDir(stateDir);
  checkNewPassword(password);
  if (dir.runningDaemon() !== null) {
    await callDaemon(dir.controlSocket, 'POST', '/api/auth/password', { newPassword: password });
    return 'daemon';
  }
  if (!existsSync(dir.path)) throw new SnapbackError('STATE_MISSING', `the state directory ${dir.path} does not exist`);
  dir.readConfig(); // STATE_MISSING unless `snapback init` made it: no state file is created elsewhere
  const unlock = dir.lock();
  try {
    const store = await StateStore.open(dir.path);
    try {
      await store.setAdminPasswordHash(await hashPassword(password));
      await store.audit({ actor: 'cli', action: 'auth.password-change', details: { via: 'state file' } });
    } finally {
      await store.close();
    }
  } finally {
    unlock();
  }
  return 'state-file';
}

export async function passwd(o: { stateDir: string; passwordStdin?: boolean }): Promise<number> {
  if (!existsSync(o.stateDir)) throw new SnapbackError('STATE_MISSING', `the state directory ${o.stateDir} does not exist`);
  const password = checkNewPassword(await readNewPassword(o.passwordStdin ?? false));
  const route = await setAdminPassword(o.stateDir, password);
  process.stdout.write(route === 'daemon' ? 'administrator password set (through the running daemon; other logins are logged out)\n' : `administrator password set in ${new StateDir(o.stateDir).path}\n`);
  return 0;
}
