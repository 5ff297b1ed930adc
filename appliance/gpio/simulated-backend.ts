/**
 * An in-memory GpioBackend for tests and for the demo: inputs are set by the test
 * (`setInput`), outputs are recorded with the clock's timestamps (`history`, `levelAt`), and
 * edge callbacks fire synchronously from `setInput`.
 */
import { SnapbackError } from '../errors.js';
import type { Clock } from '../clock.js';
import type { EdgeCallback, GpioBackend, GpioBackendInfo, Level, LineConfig } from './gpio-backend.js';

export interface OutputChange {
  at: number;
  level: Level;
}

interface SimLine {
  config: LineConfig;
  watchers: EdgeCallback[];
}

export class SimulatedGpioBackend implements GpioBackend {
  readonly info: GpioBackendInfo = { kind: 'simulated', chip: null };
  readonly lineCount: number;
  private readonly clock: Clock;
  private readonly lines = new Map<number, SimLine>();
  /** Physical level of every line, exported or not (inputs keep theirs across exports). */
  private readonly levels = new Map<number, Level>();
  private readonly histories = new Map<number, OutputChange[]>();
  private readonly exportFailures = new Map<number, string>();
  private readonly outputListeners = new Map<number, ((level: Level) => void)[]>();

  constructor(options: { clock: Clock; lineCount?: number; inputs?: Record<number, Level> }) {
    this.clock = options.clock;
    this.lineCount = options.lineCount ?? 28;
    for (const [bcm, level] of Object.entries(options.inputs ?? {})) this.levels.set(Number(bcm), level);
  }

  // ---- GpioBackend ----

  export(bcm: number, config: LineConfig): void {
    this.checkRange(bcm);
    const failure = this.exportFailures.get(bcm);
    if (failure !== undefined) throw new SnapbackError('IO_ERROR', failure, { bcm });
    if (this.lines.has(bcm)) throw new SnapbackError('BUSY', `GPIO${bcm} is already exported`, { bcm });
    this.lines.set(bcm, { config, watchers: [] });
    if (config.direction === 'out') this.drive(bcm, config.initial);
    else if (!this.levels.has(bcm)) this.levels.set(bcm, 0);
  }

  unexport(bcm: number): void {
    this.lines.delete(bcm);
  }

  read(bcm: number): Level {
    this.line(bcm);
    return this.levels.get(bcm) ?? 0;
  }

  write(bcm: number, level: Level): void {
    const line = this.line(bcm);
    if (line.config.direction !== 'out') throw new SnapbackError('BAD_ARGUMENT', `GPIO${bcm} is an input`, { bcm });
    this.drive(bcm, level);
  }

  watch(bcm: number, cb: EdgeCallback): void {
    const line = this.line(bcm);
    if (line.config.direction !== 'in') throw new SnapbackError('BAD_ARGUMENT', `GPIO${bcm} is an output`, { bcm });
    line.watchers.push(cb);
  }

  unwatch(bcm: number, cb?: EdgeCallback): void {
    const line = this.lines.get(bcm);
    if (!line) return;
    line.watchers = cb ? line.watchers.filter((w) => w !== cb) : [];
  }

  // ---- test controls ----

  /** Sets the physical level of an input (exported or not yet) and fires its edge callbacks. */
  setInput(bcm: number, level: Level): void {
    this.checkRange(bcm);
    const line = this.lines.get(bcm);
    if (line?.config.direction === 'out') throw new SnapbackError('BAD_ARGUMENT', `GPIO${bcm} is an output`, { bcm });
    const before = this.levels.get(bcm) ?? 0;
    this.levels.set(bcm, level);
    if (!line || before === level) return;
    const edge = line.config.edge ?? 'both';
    const fires = edge === 'both' || (edge === 'rising' && level === 1) || (edge === 'falling' && level === 0);
    if (!fires) return;
    for (const cb of line.watchers.slice()) cb(level);
  }

  /**
   * Calls `cb` after every write to output `bcm` (a level change or not): lets a test play the
   * device on the other end of the wire, e.g. a host that reacts to its power button.
   */
  onOutput(bcm: number, cb: (level: Level) => void): void {
    let list = this.outputListeners.get(bcm);
    if (!list) this.outputListeners.set(bcm, (list = []));
    list.push(cb);
  }

  /** Makes every export of `bcm` fail with `message` (as a busy or forbidden line would). */
  failExport(bcm: number, message: string): void {
    this.exportFailures.set(bcm, message);
  }

  isExported(bcm: number): boolean {
    return this.lines.has(bcm);
  }

  exportedLines(): number[] {
    return [...this.lines.keys()].sort((a, b) => a - b);
  }

  watcherCount(bcm: number): number {
    return this.lines.get(bcm)?.watchers.length ?? 0;
  }

  /** Current physical level of a line (0 for a line never set). */
  level(bcm: number): Level {
    return this.levels.get(bcm) ?? 0;
  }

  /** Every level an output was driven to, with the clock's time (repeats of a level included). */
  history(bcm: number): readonly OutputChange[] {
    return this.histories.get(bcm) ?? [];
  }

  /** The level the output had at time `t` (after every write made at or before `t`). */
  levelAt(bcm: number, t: number): Level | undefined {
    let level: Level | undefined;
    for (const change of this.history(bcm)) {
      if (change.at > t) break;
      level = change.level;
    }
    return level;
  }

  private drive(bcm: number, level: Level): void {
    this.levels.set(bcm, level);
    let history = this.histories.get(bcm);
    if (!history) this.histories.set(bcm, (history = []));
    history.push({ at: this.clock.now(), level });
    for (const cb of this.outputListeners.get(bcm) ?? []) cb(level);
  }

  private line(bcm: number): SimLine {
    const line = this.lines.get(bcm);
    if (!line) throw new SnapbackError('BAD_ARGUMENT', `GPIO${bcm} is not exported`, { bcm });
    return line;
  }

  private checkRange(bcm: number): void {
    if (!Number.isInteger(bcm) || bcm < 0 || bcm >= this.lineCount) {
      throw new SnapbackError('OUT_OF_RANGE', `GPIO${bcm} does not exist (0…${this.lineCount - 1})`, { bcm });
    }
  }
}
