/**
 * Live state from the daemon: one EventSource on /api/events, fanned out to the pages.
 * Events: 'status', 'regions', 'session-ended', 'audit', 'settings', 'model-verify', and
 * 'connection' (true/false) when the stream opens or drops.
 */
import type { ApplianceStatus } from '../../appliance/api/status.js';

type Listener = (data: unknown) => void;

const listeners = new Map<string, Set<Listener>>();
let source: EventSource | null = null;
export let latestStatus: ApplianceStatus | null = null;
export let connected = false;

export function on<T>(event: string, fn: (data: T) => void): () => void {
  let set = listeners.get(event);
  if (!set) listeners.set(event, (set = new Set()));
  const l = fn as Listener;
  set.add(l);
  return () => set.delete(l);
}

function emit(event: string, data: unknown): void {
  for (const l of [...(listeners.get(event) ?? [])]) {
    try {
      l(data);
    } catch (err) {
      // A page's handler failing must not stop the others.
      reportError(err);
    }
  }
}

const EVENTS = ['status', 'regions', 'session-ended', 'audit', 'settings', 'model-verify'];

/** Opens the stream. `onGone` runs when the stream closes for good (e.g. the login ended). */
export function connect(onGone: () => void): void {
  if (source) return;
  const es = new EventSource('/api/events');
  source = es;
  es.addEventListener('open', () => {
    connected = true;
    emit('connection', true);
  });
  es.addEventListener('error', () => {
    connected = false;
    emit('connection', false);
    // CLOSED: the server answered with an error (not 200): usually the login is gone.
    if (es.readyState === EventSource.CLOSED) {
      source = null;
      onGone();
    }
  });
  for (const ev of EVENTS) {
    es.addEventListener(ev, (m: MessageEvent<string>) => {
      let data: unknown;
      try {
        data = JSON.parse(m.data);
      } catch {
        return;
      }
      if (ev === 'status') latestStatus = data as ApplianceStatus;
      emit(ev, data);
    });
  }
}

export function disconnect(): void {
  source?.close();
  source = null;
}

export function setStatus(s: ApplianceStatus): void {
  latestStatus = s;
  emit('status', s);
}
