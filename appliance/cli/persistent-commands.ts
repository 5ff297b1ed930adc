/**
 * `snapback persistent add|list|remove`: the persistent areas of the host's disk (partitions or
 * byte ranges whose writes survive session ends even when frozen). Through the running daemon's
 * control socket when one runs; otherwise on the state directory itself (locked meanwhile), where
 * the change waits for the daemon's start, which ends the session. Either way a change takes
 * effect at the next session end, and a bad request changes nothing.
 */
import type { PersistentAddRequest, PersistentArea, PersistentChangeReply, PersistentList, PersistentRemoveQuery } from '../api/persistent.js';
import { openEngine, type Engine } from '../storage/engine.js';
import type { AreaChange } from '../storage/persistent-areas.js';
import { formatSize } from '../storage/sizes.js';
import { StateDir } from '../storage/state-dir.js';
import { StateStore } from '../state/state-store.js';
import { SnapbackError } from '../errors.js';
import { callDaemon } from './control-client.js';
import { out } from './output.js';

interface Selector {
  stateDir: string;
  partition?: number;
  range?: string;
}

/** Exactly one of the flags (`what` lists them for the message). */
function one<T>(values: (T | undefined)[], what: string): void {
  if (values.filter((v) => v !== undefined).length !== 1) throw new SnapbackError('BAD_ARGUMENT', `give exactly one of ${what}`);
}

/** Runs `fn` on the state directory's engine and state file, with the directory locked (no daemon runs). */
async function offline<T>(stateDir: string, fn: (engine: Engine, store: StateStore) => Promise<T>): Promise<T> {
  const dir = new StateDir(stateDir);
  dir.assertNotInUse('persistent');
  dir.readConfig(); // STATE_MISSING unless `snapback init` made it
  const unlock = dir.lock();
  try {
    const engine = await openEngine(stateDir, { verifyModel: 'off' });
    try {
      const store = await StateStore.open(dir.path);
      try {
        return await fn(engine, store);
      } finally {
        await store.close();
      }
    } finally {
      await engine.close();
    }
  } finally {
    unlock();
  }
}

const describe = (a: PersistentArea): string =>
  `${a.partition !== null ? `partition ${a.partition}, ` : ''}bytes ${a.offset}–${a.offset + a.length - 1} (${formatSize(a.length)})`;

function printChange(verb: 'added' | 'removed', c: PersistentChangeReply | AreaChange): void {
  if (c.adjustment) out(`range ${c.area.requested.offset}:${c.area.requested.length} ${c.adjustment}`);
  out(`persistent area ${c.area.id} (${describe(c.area)}) will be ${verb} at the next session end`);
}

export async function persistentAdd(o: Selector): Promise<number> {
  one([o.partition, o.range], '--partition N, --range OFFSET:LENGTH');
  const req: PersistentAddRequest = o.partition !== undefined ? { partition: o.partition } : { range: o.range! };
  const dir = new StateDir(o.stateDir);
  if (dir.runningDaemon() !== null) {
    printChange('added', (await callDaemon(dir.controlSocket, 'POST', '/api/persistent', req)) as PersistentChangeReply);
    return 0;
  }
  const c = await offline(o.stateDir, async (engine, store) => {
    const change = await engine.persistent.add(req);
    await store.audit({ actor: 'cli', action: 'persistent.add', details: { id: change.area.id, offset: change.area.offset, length: change.area.length, partition: change.area.partition, via: 'state directory' } });
    return change;
  });
  printChange('added', c);
  out('(no daemon runs: it takes effect when the daemon starts, which ends the session)');
  return 0;
}

export async function persistentRemove(o: Selector & { id?: string }): Promise<number> {
  one([o.partition, o.range, o.id], '--partition N, --range OFFSET:LENGTH, --id ID');
  const sel: PersistentRemoveQuery = o.id !== undefined ? { id: o.id } : o.partition !== undefined ? { partition: String(o.partition) } : { range: o.range! };
  const dir = new StateDir(o.stateDir);
  if (dir.runningDaemon() !== null) {
    const q = new URLSearchParams(sel as Record<string, string>).toString();
    printChange('removed', (await callDaemon(dir.controlSocket, 'DELETE', `/api/persistent?${q}`)) as PersistentChangeReply);
    return 0;
  }
  const c = await offline(o.stateDir, async (engine, store) => {
    const change = await engine.persistent.remove(sel);
    await store.audit({ actor: 'cli', action: 'persistent.remove', details: { id: change.area.id, via: 'state directory' } });
    return change;
  });
  printChange('removed', c);
  out('(no daemon runs: it takes effect when the daemon starts, which ends the session)');
  return 0;
}

export async function persistentList(o: { stateDir: string; json?: boolean }): Promise<number> {
  const dir = new StateDir(o.stateDir);
  const list =
    dir.runningDaemon() !== null
      ? ((await callDaemon(dir.controlSocket, 'GET', '/api/persistent')) as PersistentList)
      : await (async () => {
          dir.readConfig();
          const engine = await openEngine(o.stateDir, { verifyModel: 'off' });
          try {
            return engine.persistent.list();
          } finally {
            await engine.close();
          }
        })();
  if (o.json) {
    out(JSON.stringify(list));
    return 0;
  }
  const active = new Set(list.active.map((a) => a.id));
  const next = list.pending ? new Set(list.pending.map((a) => a.id)) : active;
  const all = [...list.active, ...(list.pending ?? []).filter((a) => !active.has(a.id))].sort((x, y) => x.offset - y.offset);
  if (all.length === 0) out('no persistent areas');
  for (const a of all) {
    const state = active.has(a.id) ? (next.has(a.id) ? 'in force' : 'removed at the next session end') : 'added at the next session end';
    out(`${a.id}\t${describe(a)}\t${state}`);
  }
  return 0;
}
