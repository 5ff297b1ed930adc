/**
 * What a fleet command does: the same calls into the appliance service as the local API's
 * routes (POST /api/session/end, /api/mode, /api/restore-mode, /api/maintenance…), audited under the same action
 * names, with the console as the actor.
 */
import { z } from 'zod';
import type { FleetCommand } from '../api/fleet.js';
import { restoreModeSchema } from '../api/common.js';
import { setMaintenanceArgsSchema, type SetMaintenanceArgs } from '../api/maintenance.js';
import { SnapbackError } from '../errors.js';
import type { ApplianceService } from '../session/appliance-service.js';
import { formatZodIssues } from '../zod-issues.js';

export const CONSOLE_ACTOR = 'console';

export type FleetAudit = (e: { actor: string; action: string; details?: Record<string, unknown> }) => Promise<unknown>;

const restoreModeArgs = z.object({ mode: restoreModeSchema }).strict();

const assignModelArgs = z
  .object({
    url: z.string().url().refine((u) => /^https?:\/\//i.test(u), 'an http(s) URL of the model image'),
    name: z.string().min(1).max(100),
    /** Usable at once, fetched region by region as the host reads (default); false: downloaded whole first. */
    lazy: z.boolean().optional(),
    /** End the session now to put the model in force (default: at the next session end). */
    now: z.boolean().optional(),
  })
  .strict();
export type AssignModelArgs = z.infer<typeof assignModelArgs>;

/** assign-model's work: import the URL into the model library (lazily) and activate the model. */
export type ModelAssigner = (args: AssignModelArgs) => Promise<{ result: unknown; audit: Record<string, unknown> }>;

/** set-maintenance's work: replaces the windows and/or sets the thawed-boots counter (it audits); resolves with the maintenance status. */
export type MaintenanceSetter = (args: SetMaintenanceArgs, actor: string) => Promise<unknown>;

/** Runs one command; resolves with its result, rejects with a SnapbackError the answer carries. */
export async function runFleetCommand(cmd: FleetCommand, service: ApplianceService, audit: FleetAudit, assignModel: ModelAssigner | null, setMaintenance: MaintenanceSetter | null = null): Promise<unknown> {
  const done = async (action: string, details: Record<string, unknown> = {}): Promise<void> => {
    await audit({ actor: CONSOLE_ACTOR, action, details: { command: cmd.id, ...details } });
  };
  switch (cmd.action) {
    case 'end-session': {
      const ended = await service.endSession('console');
      await done('session.end', { session: ended.number });
      return { session: ended.number, regionsWritten: ended.regionsWritten, sessionEndMs: ended.sessionEndMs };
    }
    case 'freeze':
    case 'thaw': {
      const mode = cmd.action === 'freeze' ? 'frozen' : 'thawed';
      await service.setMode(mode);
      await done('mode.set', { mode });
      return { mode };
    }
    case 'restore-mode': {
      const args = restoreModeArgs.safeParse(cmd.args ?? {});
      if (!args.success) throw new SnapbackError('BAD_ARGUMENT', `restore-mode: ${formatZodIssues(args.error, 'args')}`);
      await service.setRestoreMode(args.data.mode);
      await done('restore-mode.set', { restoreMode: args.data.mode });
      return { restoreMode: args.data.mode };
    }
    case 'assign-model': {
      const args = assignModelArgs.safeParse(cmd.args ?? {});
      if (!args.success) throw new SnapbackError('BAD_ARGUMENT', `assign-model: ${formatZodIssues(args.error, 'args')}`);
      if (!assignModel) throw new SnapbackError('NOT_SUPPORTED', 'assign-model needs the model library (import from a URL, then activate), which this appliance version does not have yet');
      const assigned = await assignModel(args.data);
      await done('model.assign', assigned.audit);
      return assigned.result;
    }
    case 'set-maintenance': {
      const args = setMaintenanceArgsSchema.safeParse(cmd.args ?? {});
      if (!args.success) throw new SnapbackError('BAD_ARGUMENT', `set-maintenance: ${formatZodIssues(args.error, 'args')}`);
      if (!setMaintenance) throw new SnapbackError('NOT_SUPPORTED', 'set-maintenance needs the maintenance component, which is not running');
      return setMaintenance(args.data, CONSOLE_ACTOR);
    }
  }
}
