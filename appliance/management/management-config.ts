/**
 * Where the appliance's fleet link is configured: DIR/management.json (mode 0600, written
 * durably), holding the management URL, the appliance name, the broker login and CA given on
 * the command line or in the web UI, and what an enrollment at a console returned (the broker's
 * URL, this appliance's login, the CA). The command line, when it names a management URL, wins
 * at each start and is remembered; the web UI changes the same file.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { applianceNameSchema } from '../api/fleet.js';
import { SnapbackError } from '../errors.js';
import { DurableJsonFile } from '../state/durable-json-file.js';

const enrollmentSchema = z.object({
  /** The console the code was redeemed at. */
  consoleUrl: z.string(),
  /** The name it was redeemed for: the login belongs to that name. */
  applianceName: z.string(),
  mqttUrl: z.string(),
  username: z.string(),
  password: z.string(),
  caCertificate: z.string().nullable(),
  enrolledAt: z.string(),
});

const configSchema = z.object({
  url: z.string().nullable(),
  applianceName: z.string().nullable(),
  /** A broker login given directly (mqtt:// URL), not by enrollment. */
  username: z.string().nullable(),
  password: z.string().nullable(),
  /** A CA (PEM) for an mqtts:// broker or an https:// console that no public CA signed. */
  caCertificate: z.string().nullable(),
  enrollment: enrollmentSchema.nullable(),
});
export type ManagementConfig = z.infer<typeof configSchema>;

export const NO_MANAGEMENT: ManagementConfig = { url: null, applianceName: null, username: null, password: null, caCertificate: null, enrollment: null };

export class ManagementConfigFile {
  private readonly file: DurableJsonFile<unknown>;

  constructor(stateDir: string) {
    this.file = new DurableJsonFile(join(stateDir, 'management.json'));
  }

  get path(): string {
    return this.file.path;
  }

  async load(): Promise<ManagementConfig> {
    const raw = await this.file.read();
    if (raw === null) return { ...NO_MANAGEMENT };
    const parsed = configSchema.safeParse(raw);
    if (!parsed.success) throw new SnapbackError('STATE_CORRUPT', `${this.path} is not a management configuration (${parsed.error.issues[0]?.message ?? 'invalid'}); fix or remove it`);
    return parsed.data;
  }

  save(config: ManagementConfig): Promise<void> {
    return this.file.write(config);
  }
}

/** The appliance's name in the fleet: the configured one, else the host name made into a valid name. */
export function applianceNameOf(config: ManagementConfig): string {
  if (config.applianceName) return config.applianceName;
  const fromHost = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return applianceNameSchema.safeParse(fromHost).success ? fromHost : 'snapback';
}

/** Where and how to connect: a broker URL with its login and CA. */
export interface BrokerTarget {
  url: string;
  username: string | null;
  password: string | null;
  caCertificate: string | null;
}

export const isConsoleUrl = (url: string): boolean => /^https?:\/\//i.test(url);

/**
 * The broker a configuration points at: the URL itself for mqtt(s)://; for a console URL, the
 * broker its enrollment returned (null: not enrolled there under this name yet).
 */
export function brokerOf(config: ManagementConfig): BrokerTarget | null {
  if (config.url === null) return null;
  if (!isConsoleUrl(config.url)) return { url: config.url, username: config.username, password: config.password, caCertificate: config.caCertificate };
  const e = config.enrollment;
  if (!e || e.consoleUrl !== config.url || e.applianceName !== applianceNameOf(config)) return null;
  return { url: e.mqttUrl, username: e.username, password: e.password, caCertificate: e.caCertificate ?? config.caCertificate };
}
