/**
 * An activation waiting for the next session end: STATE/model-switch.json names the model to
 * switch to. Kept on disk so that a daemon restart or a power cut before that session end does
 * not forget it (starting the daemon ends the session, so the switch happens then). The write
 * log's header, not this file, says which model is in force: the file is only a request, and is
 * removed once the switch is made (or when the request is withdrawn).
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileDurably, syncDir } from './durable-write.js';
import type { StateDir } from './state-dir.js';
import { SnapbackError, fromSystemError } from '../errors.js';

const FILE = 'model-switch.json';

const schema = z.object({ modelId: z.string().regex(/^[0-9a-f]{64}$/), requestedAt: z.string() });
export type PendingSwitch = z.infer<typeof schema>;

function pathOf(state: StateDir): string {
  return join(state.path, FILE);
}

/** The activation waiting for the next session end, or null. */
export async function readPendingSwitch(state: StateDir): Promise<PendingSwitch | null> {
  let text: string;
  try {
    text = await readFile(pathOf(state), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, `reading ${pathOf(state)}`);
  }
  try {
    return schema.parse(JSON.parse(text));
  } catch (err) {
    throw new SnapbackError('STATE_CORRUPT', `${pathOf(state)} is not valid (${(err as Error).message}); remove it to withdraw the pending activation`);
  }
}

/** Records (or, with null, withdraws) the activation to make at the next session end. */
export async function writePendingSwitch(state: StateDir, modelId: string | null): Promise<void> {
  if (modelId === null) {
    try {
      await rm(pathOf(state), { force: true });
      await syncDir(state.path);
    } catch (err) {
      throw fromSystemError(err, `removing ${pathOf(state)}`);
    }
    return;
  }
  const body: PendingSwitch = { modelId, requestedAt: new Date().toISOString() };
  await writeFileDurably(pathOf(state), JSON.stringify(body, null, 2) + '\n');
}
