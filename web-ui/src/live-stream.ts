/**
 * A server's live events: one EventSource on /api/events whose named events (JSON) are fanned
 * out to the pages, and 'connection' (true/false) when the stream opens or drops. The appliance's
 * web UI and the console's each make one with the events their server sends.
 */
type Listener = (data: unknown) => void;

export interface LiveStream {
  /** Subscribes to an event; returns the unsubscribe. */
  on<T>(event: string, fn: (data: T) => void): () => void;
  /** Hands data to an event's subscribers as if the server had sent it (e.g. a fresh reply). */
  emit(event: string, data: unknown): void;
  /** Opens the stream. `onGone` runs when the stream closes for good (e.g. the login ended). */
  connect(onGone: () => void): void;
  disconnect(): void;
}

export function liveStream(events: readonly string[]): LiveStream {
  const listeners = new Map<string, Set<Listener>>();
  let source: EventSource | null = null;

  const emit = (event: string, data: unknown): void => {
    for (const l of [...(listeners.get(event) ?? [])]) {
      try {
        l(data);
      } catch (err) {
        // A page's handler failing must not stop the others.
        reportError(err);
      }
    }
  };

  return {
    on<T>(event: string, fn: (data: T) => void): () => void {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      const l = fn as Listener;
      set.add(l);
      return () => set.delete(l);
    },
    emit,
    connect(onGone: () => void): void {
      if (source) return;
      const es = new EventSource('/api/events');
      source = es;
      es.addEventListener('open', () => emit('connection', true));
      es.addEventListener('error', () => {
        emit('connection', false);
        // CLOSED: the server answered with an error (not 200): usually the login is gone.
        if (es.readyState === EventSource.CLOSED) {
          source = null;
          onGone();
        }
      });
      for (const ev of events) {
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
    },
    disconnect(): void {
      source?.close();
      source = null;
    },
  };
}
