/**
 * Live updates from the console: one EventSource on /api/events, fanned out to the pages.
 * Events: 'appliances' (the records that changed), 'commands' (made or changed), 'audit' (new
 * entries), and 'connection' (true/false) when the stream opens or drops.
 */
type Listener = (data: unknown) => void;

const listeners = new Map<string, Set<Listener>>();
let source: EventSource | null = null;

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

const EVENTS = ['appliances', 'commands', 'audit'];

/** Opens the stream. `onGone` runs when the stream closes for good (e.g. the login ended). */
export function connect(onGone: () => void): void {
  if (source) return;
  const es = new EventSource('/api/events');
  source = es;
  es.addEventListener('open', () => emit('connection', true));
  es.addEventListener('error', () => {
    emit('connection', false);
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
      emit(ev, data);
    });
  }
}

export function disconnect(): void {
  source?.close();
  source = null;
}
