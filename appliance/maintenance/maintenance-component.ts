/**
 * The daemon's maintenance component: it keeps the maintenance windows (in the settings of the
 * state store), starts each at its next scheduled time (window-run.ts does the work), and keeps
 * the "thawed for the next N boots" counter, which each session end consumes and which freezes
 * the disk when it reaches 0.
 *
 * One window runs at a time; a window due while another runs is skipped with that reason. A
 * start the daemon was not running for is not made up later: the next one counts.
 *
 * Durability: the running window's journal (STATE/maintenance-run.json, written durably at each
 * step) survives a daemon restart or a power cut. A window found there at the next start is
 * ended safely, not resumed: it is recorded as interrupted, the mode goes back to what it was
 * before the window (frozen, usually: the next session end restores), and no power action is
 * taken (a host still on is never cut off).
 *
 * Every step goes to the session history (recordHostEvent) and the audit log (maintenance.*).
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { Component } from '../component.js';
import type { ProtectionMode } from '../api/common.js';
import {
  maintenanceSettingsSchema,
  maintenanceWindowInputSchema,
  type MaintenanceRun,
  type MaintenanceSettings,
  type MaintenanceStatus,
  type MaintenanceWindow,
  type MaintenanceWindowInput,
} from '../api/maintenance.js';
import type { Clock, TimerHandle } from '../clock.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ApplianceService, SessionRecord } from '../session/appliance-service.js';
import { DurableJsonFile } from '../state/durable-json-file.js';
import { formatZodIssues } from '../zod-issues.js';
import { MaintenanceSchedule } from './schedule.js';
import { sendWakeOnLan } from './wake-on-lan.js';
import { MAINTENANCE_ACTOR, runWindow, type HostPowerPort } from './window-run.js';

const log = childLogger('maintenance');

/** The file in the state directory that holds the running window and the last few. */
export const MAINTENANCE_JOURNAL = 'maintenance-run.json';
const RECENT = 10;
/** Longest single timer: the schedule is looked at again at least this often (wall-clock jumps, DST). */
const MAX_TIMER_MS = 60 * 60_000;

interface Journal {
  running: (MaintenanceRun & { previousMode: ProtectionMode }) | null;
  recent: MaintenanceRun[];
  /** The last session whose end the thawed-boots counter has seen (counted or not). */
  thawCountedThrough?: number;
}

export interface MaintenanceDeps {
  service: ApplianceService;
  /** The maintenance part of the settings and a way to save it (the state store). */
  settings: () => MaintenanceSettings;
  saveSettings: (s: MaintenanceSettings) => Promise<void>;
  audit: (e: { actor: string; action: string; details?: Record<string, unknown> }) => Promise<unknown>;
  /** The host's power, when GPIO runs; null: none. */
  power: () => HostPowerPort | null;
  /** Captures the host's disk as model `name` and activates it; resolves with its name. */
  captureAndActivate: (name: string) => Promise<string>;
  stateDir: string;
  clock: Clock;
  /** Wall-clock time (epoch ms); default Date.now. */
  wallNow?: () => number;
  wakeOnLan?: typeof sendWakeOnLan;
  powerOnTimeoutMs?: number;
  forcedOffTimeoutMs?: number;
}

export class MaintenanceComponent extends EventEmitter implements Component {
  readonly name = 'maintenance';
  private started = false;
  private timer: TimerHandle | null = null;
  private abort = new AbortController();
  private journal: Journal = { running: null, recent: [] };
  private readonly file: DurableJsonFile<Journal>;
  private current: Promise<void> | null = null;
  private writing: Promise<void> = Promise.resolve();
  private readonly wallNow: () => number;

  private readonly onSessionEnded = (record: SessionRecord): void => void this.countSessionEnd(record.number);

  constructor(private readonly deps: MaintenanceDeps) {
    super();
    this.file = new DurableJsonFile<Journal>(join(deps.stateDir, MAINTENANCE_JOURNAL));
    this.wallNow = deps.wallNow ?? Date.now;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.abort = new AbortController();
    this.journal = (await this.file.read()) ?? { running: null, recent: [] };
    const left = this.journal.running;
    if (left) await this.endInterrupted(left);
    this.deps.service.on('session-ended', this.onSessionEnded);
    // session ends made before this start (the daemon's own, when the appliance boots with the host) count too
    const through = this.journal.thawCountedThrough;
    if (through !== undefined) {
      const ended = this.deps.service.sessions().filter((r) => r.endedAt !== null && r.number > through).map((r) => r.number);
      for (const n of ended.sort((a, b) => a - b)) await this.countSessionEnd(n);
    }
    this.arm();
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.deps.service.off('session-ended', this.onSessionEnded);
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = null;
    // a window in progress stays in the journal: the next start ends it safely
    // (a button press under way is ended by the GPIO component's own stop)
    this.abort.abort(new SnapbackError('CLOSED', 'the daemon is stopping'));
    await this.writing;
  }

  // ---- settings ----

  /** The windows, the counter, the running window and the last few. */
  status(): MaintenanceStatus {
    const s = this.deps.settings();
    const now = this.wallNow();
    return {
      windows: s.windows.map((w) => ({ window: w, nextRun: iso(MaintenanceSchedule.parse(w.schedule, w.timeZone).nextAfter(now)) })),
      thawBoots: s.thawBoots,
      running: this.journal.running ? publicRun(this.journal.running) : null,
      recent: [...this.journal.recent],
    };
  }

  /** Adds a window; BAD_ARGUMENT (schedule, time zone, fields) or ALREADY_EXISTS, nothing changed. */
  async add(input: MaintenanceWindowInput, actor: string): Promise<MaintenanceWindow> {
    const w = parseWindow(input);
    const s = this.deps.settings();
    if (s.windows.some((x) => x.name === w.name)) throw new SnapbackError('ALREADY_EXISTS', `a maintenance window named "${w.name}" exists already`, { name: w.name });
    await this.save({ ...s, windows: [...s.windows, w] });
    await this.deps.audit({ actor, action: 'maintenance.add', details: { ...w } });
    return w;
  }

  async remove(name: string, actor: string): Promise<void> {
    const s = this.deps.settings();
    if (!s.windows.some((x) => x.name === name)) throw new SnapbackError('NOT_FOUND', `no maintenance window named "${name}"`, { name });
    await this.save({ ...s, windows: s.windows.filter((x) => x.name !== name) });
    await this.deps.audit({ actor, action: 'maintenance.remove', details: { name } });
  }

  /** Replaces every window and/or the counter at once (the console's set-maintenance). */
  async replace(next: { windows?: MaintenanceWindowInput[]; thawBoots?: number }, actor: string): Promise<MaintenanceStatus> {
    const windows = next.windows?.map(parseWindow);
    if (windows && new Set(windows.map((w) => w.name)).size !== windows.length) throw new SnapbackError('BAD_ARGUMENT', 'two maintenance windows have the same name');
    if (windows) await this.save({ ...this.deps.settings(), windows });
    if (next.thawBoots !== undefined) await this.setThawBoots(next.thawBoots, actor);
    if (windows) await this.deps.audit({ actor, action: 'maintenance.set', details: { windows: windows.map((w) => w.name) } });
    return this.status();
  }

  /**
   * Thawed for the next `boots` session ends, then frozen. 0 withdraws the counter (the mode
   * stays as it is).
   */
  async setThawBoots(boots: number, actor: string): Promise<void> {
    if (!Number.isInteger(boots) || boots < 0 || boots > 1000) throw new SnapbackError('BAD_ARGUMENT', `--boots must be a whole number from 0 to 1000 (got ${boots})`);
    // the session now is the first thawed boot: its end is the first one counted
    this.journal.thawCountedThrough = this.deps.service.status().session.number - 1;
    await this.persist();
    await this.save({ ...this.deps.settings(), thawBoots: boots });
    if (boots > 0 && this.deps.service.status().mode !== 'thawed') await this.deps.service.setMode('thawed');
    this.deps.service.recordHostEvent(boots > 0 ? `thawed for the next ${boots} boot(s)` : 'thawed-boots counter withdrawn');
    await this.deps.audit({ actor, action: 'maintenance.thaw-boots', details: { boots } });
  }

  private async save(s: MaintenanceSettings): Promise<void> {
    const parsed = maintenanceSettingsSchema.safeParse(s);
    if (!parsed.success) throw new SnapbackError('BAD_ARGUMENT', `invalid maintenance settings: ${formatZodIssues(parsed.error)}`);
    await this.deps.saveSettings(parsed.data);
    this.arm();
    this.emit('change');
  }

  // ---- thawed boots ----

  /** Session `number` ended: one thawed boot less (not for a window's own session ends). */
  private async countSessionEnd(number: number): Promise<void> {
    const through = this.journal.thawCountedThrough;
    if (through !== undefined && number <= through) return;
    this.journal.thawCountedThrough = number;
    void this.persist();
    if (this.journal.running) return;
    const s = this.deps.settings();
    if (s.thawBoots <= 0) return;
    const left = s.thawBoots - 1;
    try {
      await this.deps.saveSettings({ ...s, thawBoots: left });
      if (left === 0) {
        await this.deps.service.setMode('frozen');
        this.deps.service.recordHostEvent('thawed boots used up: frozen (the next session end restores)');
      } else this.deps.service.recordHostEvent(`thawed boots left: ${left}`);
      await this.deps.audit({ actor: MAINTENANCE_ACTOR, action: 'maintenance.thaw-boots.consumed', details: { left, ...(left === 0 ? { mode: 'frozen' } : {}) } });
      this.emit('change');
    } catch (err) {
      log.error({ err }, 'could not count down the thawed boots');
    }
  }

  // ---- the schedule ----

  /** Sets the timer for the next window start (or a later look at the schedule). */
  private arm(): void {
    if (!this.started) return;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    this.timer = null;
    const now = this.wallNow();
    let next: { at: number; windows: MaintenanceWindow[] } | null = null;
    for (const w of this.deps.settings().windows) {
      let at: number | null;
      try {
        at = MaintenanceSchedule.parse(w.schedule, w.timeZone).nextAfter(now);
      } catch (err) {
        log.error({ err, window: w.name }, 'a maintenance window has a schedule that no longer parses: it never runs');
        continue;
      }
      if (at === null) continue;
      if (!next || at < next.at) next = { at, windows: [w] };
      else if (at === next.at) next.windows.push(w);
    }
    const target = next;
    const delay = target ? Math.min(target.at - now, MAX_TIMER_MS) : MAX_TIMER_MS;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = null;
      if (target && this.wallNow() >= target.at) for (const w of target.windows) this.begin(w, target.at);
      this.arm();
    }, Math.max(0, delay));
  }

  /** Starts window `w` due at `at`, unless one runs already (then it is skipped, and says so). */
  private begin(w: MaintenanceWindow, at: number): void {
    if (this.current) {
      void this.record({ window: w.name, startedAt: iso(at) ?? '', endedAt: iso(this.wallNow()), step: null, result: 'skipped', message: `another maintenance window (${this.journal.running?.window ?? '?'}) is running` });
      return;
    }
    const run = this.runOne(w, at).finally(() => {
      this.current = null;
      this.emit('change');
    });
    this.current = run;
  }

  private async runOne(w: MaintenanceWindow, at: number): Promise<void> {
    const service = this.deps.service;
    this.journal.running = { window: w.name, startedAt: iso(at) ?? '', endedAt: null, step: null, result: null, message: null, previousMode: service.status().mode };
    // on disk before anything changes: a restart from here on ends the window safely
    await this.persist();
    this.auditLater({ actor: MAINTENANCE_ACTOR, action: 'maintenance.window.start', details: { window: w.name, after: w.after } });
    let outcome;
    try {
      outcome = await runWindow(w, at, {
        clock: this.deps.clock,
        wallNow: this.wallNow,
        power: this.deps.power(),
        mode: () => service.status().mode,
        setMode: (m) => service.setMode(m),
        endSession: (note) => service.endSession('maintenance', note),
        captureAndActivate: this.deps.captureAndActivate,
        wakeOnLan: this.deps.wakeOnLan ?? sendWakeOnLan,
        powerOnTimeoutMs: this.deps.powerOnTimeoutMs ?? 5 * 60_000,
        forcedOffTimeoutMs: this.deps.forcedOffTimeoutMs ?? 30_000,
        signal: this.abort.signal,
        // the journal and audit writes are queued, not waited for: a power sequence never
        // waits on the SD card (the journal only matters if the daemon stops, and then the
        // window is ended safely whichever step it names)
        step: async (step, what, details) => {
          if (this.journal.running) this.journal.running.step = step;
          this.history(what);
          void this.persist();
          this.auditLater({ actor: MAINTENANCE_ACTOR, action: `maintenance.window.${step}`, details: { window: w.name, ...details } });
          this.emit('change');
        },
      });
    } catch (err) {
      // the daemon stops: the journal keeps the window for the next start to end safely
      log.warn({ err, window: w.name }, 'a maintenance window was cut short by the daemon stopping');
      return;
    }
    const running = this.journal.running;
    this.journal.running = null;
    const ended: MaintenanceRun = { window: w.name, startedAt: running?.startedAt ?? iso(at) ?? '', endedAt: iso(this.wallNow()), step: running?.step ?? null, result: outcome.result, message: outcome.message };
    if (outcome.result === 'skipped') log.warn({ window: w.name, why: outcome.message }, `maintenance window ${w.name} skipped: ${outcome.message}`);
    else if (outcome.result === 'failed') log.error({ window: w.name, why: outcome.message }, `maintenance window ${w.name} failed: ${outcome.message}`);
    else log.info({ window: w.name, result: outcome.result }, `maintenance window ${w.name}: ${outcome.message}`);
    await this.record(ended);
  }

  /** A window left running by a daemon that stopped: recorded as interrupted, the mode as before it. */
  private async endInterrupted(left: MaintenanceRun & { previousMode: ProtectionMode }): Promise<void> {
    const message = `the daemon restarted during step ${left.step ?? 'checking'}: ended safely (mode back to ${left.previousMode}, no power action)`;
    try {
      if (this.deps.service.status().mode !== left.previousMode) await this.deps.service.setMode(left.previousMode);
    } catch (err) {
      log.error({ err }, 'could not set the mode back after an interrupted maintenance window');
    }
    this.journal.running = null;
    await this.record({ ...publicRun(left), endedAt: iso(this.wallNow()), result: 'interrupted', message });
  }

  /** Ends a run: the history, the audit log, the journal's recent list. */
  private async record(run: MaintenanceRun): Promise<void> {
    this.history(`maintenance window ${run.window}: ${run.result ?? 'ended'}${run.message ? ` (${run.message})` : ''}`);
    this.journal.recent = [run, ...this.journal.recent].slice(0, RECENT);
    await this.persist();
    await this.deps.audit({ actor: MAINTENANCE_ACTOR, action: `maintenance.window.${run.result ?? 'end'}`, details: { window: run.window, ...(run.message ? { message: run.message } : {}) } }).catch(() => undefined);
    this.emit('change');
  }

  private auditLater(e: { actor: string; action: string; details?: Record<string, unknown> }): void {
    this.deps.audit(e).catch((err: unknown) => log.warn({ err, action: e.action }, 'audit write failed'));
  }

  private history(what: string): void {
    try {
      this.deps.service.recordHostEvent(what);
    } catch (err) {
      log.warn({ err, what }, 'could not record a maintenance step in the session history');
    }
  }

  /** Writes the journal (serialised: the last write holds the last state). */
  private persist(): Promise<void> {
    const snapshot = structuredClone(this.journal);
    this.writing = this.writing.then(
      () => this.file.write(snapshot),
      () => this.file.write(snapshot),
    );
    return this.writing.catch((err: unknown) => log.error({ err }, 'could not write the maintenance journal'));
  }
}

/** A window as given, checked: its fields, its schedule and its time zone. */
export function parseWindow(input: MaintenanceWindowInput): MaintenanceWindow {
  const parsed = maintenanceWindowInputSchema.safeParse(input);
  if (!parsed.success) throw new SnapbackError('BAD_ARGUMENT', `invalid maintenance window: ${formatZodIssues(parsed.error)}`);
  MaintenanceSchedule.parse(parsed.data.schedule, parsed.data.timeZone);
  return parsed.data;
}

function publicRun(r: MaintenanceRun & { previousMode?: ProtectionMode }): MaintenanceRun {
  const { previousMode: _p, ...run } = r;
  return run;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
