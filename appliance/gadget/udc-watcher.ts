/**
 * Watches /sys/class/udc/<udc>/state. It is a sysfs attribute: it is read on a timer, and
 * inotify (fs.watch), which the UDC core's sysfs_notify triggers on most kernels, only makes
 * a read happen sooner. Each read is handed over with the time it was made; a missing file
 * (the UDC went away) reads as "not attached".
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { repeat, type Clock } from '../clock.js';

export interface UdcWatcherOptions {
  sysRoot: string;
  udc: string;
  intervalMs: number;
  clock: Clock;
  onRead: (state: string, atMs: number) => void;
  onError?: (err: unknown) => void;
}

function udcStatePath(sysRoot: string, udc: string): string {
  return path.join(sysRoot, 'class', 'udc', udc, 'state');
}

async function readUdcState(sysRoot: string, udc: string): Promise<string> {
  try {
    return (await readFile(udcStatePath(sysRoot, udc), 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'not attached';
    throw err;
  }
}

export class UdcWatcher {
  private stopTimer: (() => void) | null = null;
  private fsWatcher: FSWatcher | null = null;
  private reading: Promise<void> | null = null;
  private again = false;
  private stopped = true;

  constructor(private readonly o: UdcWatcherOptions) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.stopTimer = repeat(this.o.clock, this.o.intervalMs, () => void this.readNow());
    try {
      this.fsWatcher = watch(udcStatePath(this.o.sysRoot, this.o.udc), { persistent: false }, () => void this.readNow());
      this.fsWatcher.on('error', () => {
        this.fsWatcher?.close();
        this.fsWatcher = null;
      });
    } catch {
      this.fsWatcher = null; // polling alone still works
    }
    void this.readNow();
  }

  stop(): void {
    this.stopped = true;
    this.stopTimer?.();
    this.stopTimer = null;
    this.fsWatcher?.close();
    this.fsWatcher = null;
  }

  /**
   * Reads the state now (coalescing concurrent requests); resolves once a read that started
   * after this call has been handed over.
   */
  readNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      try {
        do {
          this.again = false;
          try {
            const state = await readUdcState(this.o.sysRoot, this.o.udc);
            if (!this.stopped) this.o.onRead(state, this.o.clock.now());
          } catch (err) {
            this.o.onError?.(err);
          }
        } while (this.again && !this.stopped);
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }
}
