/**
 * `snapback partitions`: the partition table of the active model (what the host sees when
 * frozen). Through the running daemon when one runs on the state directory; else read from the
 * active model's image in the state directory.
 */
import type { PartitionTable } from '../api/partitions.js';
import { SnapbackError } from '../errors.js';
import { ModelImage } from '../storage/model-image.js';
import { ModelLibrary } from '../storage/model-library.js';
import { readPartitionTable } from '../storage/partition-table.js';
import { formatSize } from '../storage/sizes.js';
import { StateDir } from '../storage/state-dir.js';
import { migrateStateDir } from '../storage/state-migration.js';
import { callDaemon } from './control-client.js';
import { out } from './output.js';

async function offlineTable(state: StateDir): Promise<PartitionTable> {
  state.assertNotInUse('partitions');
  await migrateStateDir(state);
  const library = new ModelLibrary(state);
  const id = await library.activeModelId();
  const model = id ? await library.find(id) : null;
  if (!model) throw new SnapbackError('STATE_CORRUPT', `the write log names no model of the library (${id ?? 'none'})`);
  if (!model.record.complete) throw new SnapbackError('BUSY', `the active model "${model.record.name}" is still arriving from its URL: ask the running daemon ("snapback serve"), which fetches what it reads`);
  const image = new ModelImage(model.imagePath, { manifestPath: model.manifestPath });
  await image.open();
  try {
    return await readPartitionTable(image);
  } finally {
    await image.close();
  }
}

/** The table as lines for a terminal: one per partition, sizes in binary units. */
function render(t: PartitionTable): string[] {
  if (t.scheme === 'none') return [`no partition table on the active model (${formatSize(t.diskSize)})`];
  const head = `${t.scheme.toUpperCase()}${t.diskId ? ` ${t.diskId}` : ''}, ${formatSize(t.diskSize)}, ${t.partitions.length} partition${t.partitions.length === 1 ? '' : 's'}`;
  const rows = [['#', 'START', 'SIZE', 'TYPE', 'LABEL'], ...t.partitions.map((p) => [String(p.number), String(p.start), formatSize(p.size), p.typeName ? `${p.typeName} (${p.type})` : p.type, p.label])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [head, ...rows.map((r) => r.map((c, i) => (i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()), ...t.warnings.map((w) => `warning: ${w}`)];
}

export async function partitions(o: { stateDir: string; json?: boolean }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const table = state.runningDaemon() !== null ? ((await callDaemon(state.controlSocket, 'GET', '/api/partitions')) as PartitionTable) : await offlineTable(state);
  if (o.json) out(JSON.stringify(table));
  else for (const line of render(table)) out(line);
  return 0;
}
