/**
 * The one interface between Snapback's GPIO logic and the kernel. Lines are named by their BCM
 * number (the "GPIO17" of the Pi's pinout); a backend maps them to whatever its kernel
 * interface uses. Levels are physical (0 = low, 1 = high): polarity (active-low buttons,
 * inverted sense inputs) is handled above the backend, so that a simulated pin shows exactly
 * what a voltmeter on the header would.
 *
 * Two implementations: OnoffGpioBackend (onoff on the legacy sysfs interface) and
 * SimulatedGpioBackend (in memory, for tests). The kernel's GPIO character device (libgpiod)
 * could replace sysfs later with a third implementation of this interface; nothing above it
 * would change. The calls are synchronous because both sysfs and libgpiod line requests are.
 */

export type Level = 0 | 1;
export type Edge = 'none' | 'rising' | 'falling' | 'both';

export type LineConfig =
  | { direction: 'in'; edge?: Edge }
  /** An output, driven to `initial` from the moment it is exported (no glitch). */
  | { direction: 'out'; initial: Level };

/** Called with the line's new level after an edge the line was configured for. */
export type EdgeCallback = (level: Level) => void;

export interface GpioBackendInfo {
  kind: 'onoff-sysfs' | 'simulated' | string;
  /** The chip that holds the BCM lines, when the backend knows it. */
  chip: { label: string; base: number; ngpio: number } | null;
}

export interface GpioBackend {
  readonly info: GpioBackendInfo;
  /** Number of BCM lines the chip has (valid numbers: 0 … lineCount-1). */
  readonly lineCount: number;
  /** Claims a line and configures it. Throws if the line cannot be claimed. */
  export(bcm: number, config: LineConfig): void;
  /** Releases a line (watches on it end). Safe on a line that is not exported. */
  unexport(bcm: number): void;
  read(bcm: number): Level;
  write(bcm: number, level: Level): void;
  /** Calls `cb` on every edge of an input line (the edge set at export; 'both' if none). */
  watch(bcm: number, cb: EdgeCallback): void;
  /** Removes one callback, or all callbacks of the line when `cb` is omitted. */
  unwatch(bcm: number, cb?: EdgeCallback): void;
}
