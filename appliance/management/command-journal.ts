/**
 * The fleet commands this appliance has seen, by id, kept durably in the state directory
 * (DIR/management-commands.json): a command id runs at most once, even when the broker delivers
 * it again (QoS 1 after a reconnect or a broker restart) or the daemon restarted in between. A
 * command is recorded before it runs and its answer after, so a repeat gets the same answer.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { fleetResponseSchema, type FleetResponse } from '../api/fleet.js';
import { DurableJsonFile } from '../state/durable-json-file.js';

const entrySchema = z.object({ id: z.string(), at: z.string(), response: fleetResponseSchema.nullable() });
const journalSchema = z.object({ commands: z.array(entrySchema) });
type Entry = z.infer<typeof entrySchema>;

/** What begin() found: the command is new (run it), running here now, or was seen before. */
export type Seen = { kind: 'new' } | { kind: 'running' } | { kind: 'answered'; response: FleetResponse } | { kind: 'interrupted' };

export class CommandJournal {
  private readonly file: DurableJsonFile<unknown>;
  private entries: Entry[] = [];
  private readonly running = new Set<string>();
  private writes: Promise<void> = Promise.resolve();

  constructor(
    stateDir: string,
    /** How many recent ids are remembered. */
    private readonly keep = 1000,
  ) {
    this.file = new DurableJsonFile(join(stateDir, 'management-commands.json'));
  }

  /** Reads the journal; an unreadable one is started afresh (it only guards against repeats). */
  async load(): Promise<void> {
    const raw = await this.file.read().catch(() => null);
    const parsed = journalSchema.safeParse(raw);
    this.entries = parsed.success ? parsed.data.commands : [];
  }

  /** Records a command as started (durably) unless it was seen before. */
  async begin(id: string): Promise<Seen> {
    const e = this.entries.find((x) => x.id === id);
    if (e) {
      if (e.response) return { kind: 'answered', response: e.response };
      return this.running.has(id) ? { kind: 'running' } : { kind: 'interrupted' };
    }
    this.entries.push({ id, at: new Date().toISOString(), response: null });
    if (this.entries.length > this.keep) this.entries.splice(0, this.entries.length - this.keep);
    this.running.add(id);
    await this.save();
    return { kind: 'new' };
  }

  /** Records a command's answer. */
  async finish(response: FleetResponse): Promise<void> {
    this.running.delete(response.id);
    const e = this.entries.find((x) => x.id === response.id);
    if (e) e.response = response;
    await this.save();
  }

  private save(): Promise<void> {
    const snapshot = { commands: this.entries.map((e) => ({ ...e })) };
    this.writes = this.writes.catch(() => undefined).then(() => this.file.write(snapshot));
    return this.writes;
  }
}
