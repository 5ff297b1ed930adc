/**
 * The disk's partitions over the region map: a band under the map with one labelled segment per
 * partition in view (its share of the bytes in view), the regions where partitions begin and end
 * (the map marks those cells), and the partitions a cell's bytes fall in (named when pointing at
 * the map). The table is the active model's (GET /api/partitions).
 */
import type { Partition, PartitionTable } from '../../appliance/api/partitions.js';
import { clear, fmtBytes, fmtInt, h } from './dom.js';

/** "2 "system" (Linux filesystem)": number, label, type. */
export function partitionName(p: Partition): string {
  return `${p.number}${p.label ? ` "${p.label}"` : ''}${p.typeName ? ` (${p.typeName})` : ` (type ${p.type})`}`;
}

/** The partitions that hold any of bytes [from, to), in disk order. */
function partitionsIn(table: PartitionTable, from: number, to: number): Partition[] {
  return table.partitions.filter((p) => p.start < to && p.start + p.size > from && !isContainer(p)).sort((a, b) => a.start - b.start);
}

/** An MBR extended partition only holds the logical ones: they are what the band shows. */
function isContainer(p: Partition): boolean {
  return p.type === '0x05' || p.type === '0x0f' || p.type === '0x85';
}

/** Regions where a partition begins or ends (the cells the map marks), sorted, no repeats. */
export function partitionBoundaries(table: PartitionTable, regionSize: number): number[] {
  if (regionSize <= 0) return [];
  const set = new Set<number>();
  for (const p of table.partitions) {
    if (isContainer(p)) continue;
    set.add(Math.floor(p.start / regionSize));
    set.add(Math.ceil((p.start + p.size) / regionSize));
  }
  return [...set].sort((a, b) => a - b);
}

/** What a cell of bytes [from, to) belongs to, for the map's inspect text; "" without a table. */
export function partitionsText(table: PartitionTable | null, from: number, to: number): string {
  if (!table || table.scheme === 'none') return '';
  const ps = partitionsIn(table, from, to);
  if (ps.length === 0) return ' · outside the partitions';
  if (ps.length === 1) return ` · partition ${partitionName(ps[0]!)}`;
  return ` · partitions ${ps.map((p) => partitionName(p)).join(', ')}`;
}

/**
 * Draws the band for the bytes in view [from, to). `table` null with `problem`: the table could
 * not be read (damaged), which the band says.
 */
export function renderPartitionBand(band: HTMLElement, table: PartitionTable | null, problem: string | null, from: number, to: number): void {
  clear(band);
  band.classList.toggle('bad', problem !== null);
  if (problem !== null) {
    band.append(h('span', { class: 'part-note' }, `Partition table: ${problem}`));
    return;
  }
  if (!table) return;
  if (table.scheme === 'none') {
    band.append(h('span', { class: 'part-note muted' }, 'No partition table on the model'));
    return;
  }
  const span = Math.max(1, to - from);
  for (const p of partitionsIn(table, from, to)) {
    const a = Math.max(p.start, from);
    const b = Math.min(p.start + p.size, to);
    const seg = h(
      'div',
      {
        class: 'part-seg',
        'data-number': String(p.number),
        title: `Partition ${partitionName(p)}: ${fmtBytes(p.size)} from byte ${fmtInt(p.start)}`,
      },
      h('span', { class: 'part-label' }, `${p.number} ${p.label || p.typeName || p.type}`),
    );
    // Positions through the CSSOM: the page's content security policy forbids style attributes.
    seg.style.left = `${((a - from) / span) * 100}%`;
    seg.style.width = `${((b - a) / span) * 100}%`;
    band.append(seg);
  }
}
