/**
 * The console's HTTP API (snapback console serve): the fleet of appliances, the commands sent to
 * them, groups, the model catalogue, enrollment codes. Login, API tokens and the audit log are
 * the same routes and shapes as the appliance's (auth.ts, audit.ts). Every error is
 * `{"error": CODE, "message": "…"}` (common.ts).
 */
import { z } from 'zod';
import { protectionModeSchema, restoreModeSchema } from './common.js';
import { applianceNameSchema, fleetCommandSchema } from './fleet.js';
import { maintenanceWindowInputSchema } from './maintenance.js';
import { modelDownloadSchema, modelIdentitySchema } from './models.js';

/** A group name ("room 101"): free text, but not empty and not absurdly long. */
export const groupNameSchema = z
  .string({ required_error: 'required' })
  .trim()
  .min(1, 'required')
  .max(64, 'at most 64 characters')
  .regex(/^[^/\\\u0000-\u001f]+$/, 'no slashes or control characters');

/** One appliance as the console sees it: what it said last (info, state) and whether it is connected. */
export const applianceRecordSchema = z.object({
  name: z.string(),
  group: z.string().nullable(),
  /** Connected to the broker now (its availability topic says "online"). */
  online: z.boolean(),
  /** When the console last heard from it (ISO time); null: never. */
  lastSeen: z.string().nullable(),
  mode: protectionModeSchema.nullable(),
  restoreMode: restoreModeSchema.nullable(),
  /** The host session's number; null before the appliance published its state. */
  session: z.number().nullable(),
  sessionStartedAt: z.string().nullable(),
  /** The active model's name, and its id. */
  model: z.string().nullable(),
  modelId: z.string().nullable(),
  download: modelDownloadSchema.nullable(),
  errors: z.array(z.string()),
  version: z.string().nullable(),
  diskSize: z.number().nullable(),
  /** When the appliance's daemon started (from its info). */
  startedAt: z.string().nullable(),
  /** When its state was last published. */
  stateUpdatedAt: z.string().nullable(),
  /** Enrolled through an enrollment code (false: it connected with credentials made elsewhere). */
  enrolled: z.boolean(),
  /** The model last assigned from the console (the command that did it tells whether it took). */
  assigned: z.object({ model: z.string(), url: z.string(), at: z.string(), command: z.string() }).nullable(),
});
export type ApplianceRecord = z.infer<typeof applianceRecordSchema>;
export const applianceListSchema = z.array(applianceRecordSchema);

export const applianceParamsSchema = z.object({ name: applianceNameSchema }).strict();

export const actionNameSchema = fleetCommandSchema.shape.action;

/** What to do: the action and its own arguments. */
export const actionSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('end-session') }).strict(),
  z.object({ action: z.literal('freeze') }).strict(),
  z.object({ action: z.literal('thaw') }).strict(),
  z.object({ action: z.literal('restore-mode'), mode: restoreModeSchema }).strict(),
  z
    .object({
      action: z.literal('assign-model'),
      /** A model of the console's catalogue (id or name) … */
      model: z.string().min(1).max(200).optional(),
      /** … or an image anywhere (http(s) URL with IMAGE.manifest.json beside it) and the name to give it. */
      url: z.string().url().max(2000).optional(),
      name: z.string().min(1).max(100).optional(),
      /** Provision lazily (regions on first read); default true. */
      lazy: z.boolean().optional(),
      /** Activate at once (ends the host session) instead of at the next session end. */
      now: z.boolean().optional(),
    })
    .strict(),
  z
    .object({
      action: z.literal('set-maintenance'),
      /** The appliance's maintenance windows: they replace its list ([]: none any more). */
      windows: z.array(maintenanceWindowInputSchema).max(20).optional(),
      /** Session ends to stay thawed for before freezing again (0: none). */
      thawBoots: z.number().int().min(0).max(1000).optional(),
    })
    .strict(),
]).superRefine((a, ctx) => {
  if (a.action === 'set-maintenance' && a.windows === undefined && a.thawBoots === undefined) ctx.addIssue({ code: 'custom', path: ['windows'], message: 'give windows and/or thawBoots' });
  if (a.action !== 'assign-model') return;
  if ((a.model !== undefined) === (a.url !== undefined)) ctx.addIssue({ code: 'custom', path: ['model'], message: 'give either model (a catalogue model) or url' });
  else if (a.url !== undefined && a.name === undefined) ctx.addIssue({ code: 'custom', path: ['name'], message: 'required with url' });
});
export type ConsoleAction = z.infer<typeof actionSchema>;
/** An action as a client sends it (fields with a default may be left out). */
export type ConsoleActionInput = z.input<typeof actionSchema>;

/**
 * POST /api/actions: one action on a selection of appliances and/or every member of groups; the
 * other fields are the action and its arguments, as in actionSchema.
 */
export const bulkActionSchema = z
  .object({
    appliances: z.array(applianceNameSchema).max(10_000).optional(),
    groups: z.array(groupNameSchema).max(1000).optional(),
  })
  .passthrough()
  .describe('{appliances?, groups?} plus an action as in POST /api/appliances/{name}/actions');

export const commandStateSchema = z.enum(['queued', 'sent', 'succeeded', 'failed']);
export type CommandState = z.infer<typeof commandStateSchema>;

/** A command to one appliance, from the request to the appliance's answer. */
export const commandRecordSchema = z.object({
  id: z.string(),
  appliance: z.string(),
  action: actionNameSchema,
  args: z.record(z.unknown()),
  /** queued: not yet accepted by the broker; sent: the broker has it; succeeded/failed: answered. */
  state: commandStateSchema,
  result: z.unknown().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  actor: z.string(),
  createdAt: z.string(),
  sentAt: z.string().nullable(),
  answeredAt: z.string().nullable(),
});
export type CommandRecord = z.infer<typeof commandRecordSchema>;

export const commandParamsSchema = z.object({ id: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, 'not a command id') }).strict();
export const commandQuerySchema = z
  .object({
    appliance: applianceNameSchema.optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
  })
  .strict();
export const commandListSchema = z.array(commandRecordSchema);

/** The 202 reply of an action on one appliance. */
export const commandAcceptedSchema = z.object({ id: z.string(), appliance: z.string(), state: commandStateSchema });
/** The 202 reply of an action on several: one command per appliance. */
export const bulkAcceptedSchema = z.object({ commands: z.array(commandAcceptedSchema) });

export const groupRecordSchema = z.object({
  name: z.string(),
  description: z.string(),
  createdAt: z.string(),
  members: z.array(z.string()),
});
export type GroupRecord = z.infer<typeof groupRecordSchema>;
export const groupListSchema = z.array(groupRecordSchema);
export const groupParamsSchema = z.object({ group: groupNameSchema }).strict();
export const groupCreateSchema = z.object({ name: groupNameSchema, description: z.string().max(500).optional() }).strict();
export const groupUpdateSchema = z.object({ description: z.string().max(500) }).strict();
/** PUT-like: set an appliance's group (null: none). */
export const groupAssignSchema = z.object({ group: groupNameSchema.nullable() }).strict();

/** A model image in the console's catalogue, served at `url` (its manifest at `url` + ".manifest.json"). */
export const catalogueModelSchema = modelIdentitySchema.extend({
  /** Where appliances fetch it (absolute, from the console's public URL). */
  url: z.string(),
});
export type CatalogueModel = z.infer<typeof catalogueModelSchema>;
export const catalogueListSchema = z.array(catalogueModelSchema);
export const catalogueParamsSchema = z.object({ model: z.string().min(1).max(200) }).strict();
export const catalogueUploadQuerySchema = z
  .object({ name: z.string().trim().min(1, 'required').max(100, 'at most 100 characters (the longest model name an appliance takes)').regex(/^[^/\\\u0000-\u001f]+$/, 'no slashes or control characters') })
  .strict();

/** A one-time enrollment code (its secret is shown once, on creation). */
export const enrollCodeInfoSchema = z.object({
  id: z.string(),
  /** The appliance name it is for; null: any name. */
  name: z.string().nullable(),
  createdAt: z.string(),
  expiresAt: z.string(),
  usedAt: z.string().nullable(),
  usedBy: z.string().nullable(),
});
export const enrollCodeListSchema = z.array(enrollCodeInfoSchema);
export const enrollCodeCreateSchema = z
  .object({
    name: applianceNameSchema.optional(),
    /** Valid for this long; default 24 h, at most 30 days. */
    validHours: z.number().int().min(1).max(720).optional(),
  })
  .strict();
export const enrollCodeCreatedSchema = enrollCodeInfoSchema.extend({ code: z.string() });
export const enrollCodeParamsSchema = z.object({ id: z.string().regex(/^[0-9a-f]{12}$/, 'not an enrollment code id') }).strict();

/** GET /api/status: the console itself. */
export const consoleStatusSchema = z.object({
  version: z.string(),
  broker: z.object({ connected: z.boolean() }),
  appliances: z.object({ total: z.number(), online: z.number() }),
});
