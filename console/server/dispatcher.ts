/**
 * From an administrator's action to commands: resolves the target appliances (one, a selection,
 * groups), turns the action into the fleet protocol's command (assign-model: the catalogue
 * model's URL; set-maintenance: the maintenance windows, which replace the appliance's), records one command per appliance and
 * its audit entry in one commit, and hands them to the broker link.
 */
import { randomBytes } from 'node:crypto';
import type { CommandRecord, ConsoleAction } from '../../appliance/api/console.js';
import type { FleetCommand } from '../../appliance/api/fleet.js';
import { HttpError } from '../../appliance/http/http-util.js';
import type { Catalogue } from './catalogue.js';
import type { ConsoleStore } from './console-store.js';
import type { FleetLink } from './fleet-link.js';

export class Dispatcher {
  constructor(
    private readonly store: ConsoleStore,
    private readonly link: FleetLink,
    private readonly catalogue: Catalogue,
  ) {}

  /** The appliances named and the members of the groups named, each once; 404 for an unknown one. */
  resolveTargets(t: { appliances?: readonly string[]; groups?: readonly string[] }): string[] {
    const out = new Set<string>();
    for (const name of t.appliances ?? []) {
      if (!this.store.appliance(name)) throw new HttpError(404, 'NOT_FOUND', `no appliance named "${name}"`);
      out.add(name);
    }
    for (const g of t.groups ?? []) {
      const group = this.store.group(g);
      if (!group) throw new HttpError(404, 'NOT_FOUND', `no group named "${g}"`);
      for (const m of group.members) out.add(m);
    }
    return [...out];
  }

  /** Sends `action` to each appliance of `targets` (already resolved); returns the commands, queued or sent. */
  async dispatch(action: ConsoleAction, targets: readonly string[], actor: string, via: Record<string, unknown> = {}): Promise<CommandRecord[]> {
    const { name: fleetAction, args, modelName } = this.toFleet(action);
    const cmds = targets.map((appliance) => ({ appliance, actor, command: { id: newCommandId(), action: fleetAction, args } satisfies FleetCommand }));
    // the commands and their audit entry in one commit: one wait for the disk before they go out
    const records = this.store.addCommands(cmds, {
      ...(modelName !== null ? { assignment: { modelName, url: String(args.url) } } : {}),
      audit: {
        actor,
        action: `fleet.${fleetAction}`,
        details: { ...via, args, commands: cmds.slice(0, 100).map((c) => ({ id: c.command.id, appliance: c.appliance })), count: cmds.length },
      },
    });
    for (const r of records) this.link.send(r);
    return records;
  }

  private toFleet(a: ConsoleAction): { name: FleetCommand['action']; args: Record<string, unknown>; modelName: string | null } {
    if (a.action === 'restore-mode') return { name: a.action, args: { mode: a.mode }, modelName: null };
    if (a.action === 'assign-model') {
        let url: string;
        let name: string;
        if (a.model !== undefined) {
          const m = this.catalogue.find(a.model);
          if (!m) throw new HttpError(404, 'NOT_FOUND', `no model "${a.model}" in the catalogue`);
          url = m.url;
          name = a.name ?? m.name;
        } else {
          url = a.url!;
          name = a.name!;
        }
      return { name: a.action, args: { url, name, lazy: a.lazy ?? true, ...(a.now !== undefined ? { now: a.now } : {}) }, modelName: name };
    }
    if (a.action === 'set-maintenance') {
      return { name: a.action, args: { ...(a.windows !== undefined ? { windows: a.windows } : {}), ...(a.thawBoots !== undefined ? { thawBoots: a.thawBoots } : {}) }, modelName: null };
    }
    return { name: a.action, args: {}, modelName: null };
  }
}

/** A command id: unique, sortable by time, and safe in a URL. */
function newCommandId(): string {
  return `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`;
}
