/**
 * Live updates over server-sent events: the initial status, region deltas as the host writes,
 * session ends, audit entries; the stream closes when the login ends.
 */
import assert from 'node:assert/strict';
import { RegionState } from '../../appliance/session/appliance-service.js';
import { Client, PASSWORD, controlRequest, startHarness, type Harness } from '../helpers/http-harness.js';

interface SseEvent {
  event: string;
  data: unknown;
}

/** Reads an event stream; `next(pred)` resolves with the first event matching it. */
class SseReader {
  readonly #queue: SseEvent[] = [];
  #waiters: { pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
  ended = false;
  #onEnd: (() => void)[] = [];
  readonly ac = new AbortController();

  static async open(url: string, headers: Record<string, string>): Promise<{ status: number; reader: SseReader }> {
    const r = new SseReader();
    const res = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: r.ac.signal });
    if (res.status === 200 && res.body) void r.#pump(res.body);
    else await res.text();
    return { status: res.status, reader: r };
  }

  async #pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (!data) continue;
          this.#push({ event, data: JSON.parse(data) });
        }
      }
    } catch {
      // aborted
    }
    this.ended = true;
    for (const f of this.#onEnd.splice(0)) f();
  }

  #push(e: SseEvent): void {
    const w = this.#waiters.find((x) => x.pred(e));
    if (w) {
      this.#waiters = this.#waiters.filter((x) => x !== w);
      w.resolve(e);
    } else this.#queue.push(e);
  }

  next(pred: (e: SseEvent) => boolean): Promise<SseEvent> {
    const i = this.#queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0]!);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }

  closed(): Promise<void> {
    return this.ended ? Promise.resolve() : new Promise((r) => this.#onEnd.push(r));
  }

  close(): void {
    this.ac.abort();
  }
}

describe('http: live updates (server-sent events)', () => {
  let hx: Harness;
  let c: Client;
  beforeEach(async () => {
    hx = await startHarness();
    c = new Client(hx.url);
    await c.setup(PASSWORD);
  });
  afterEach(async () => {
    await hx.close();
  });

  it('refuses a stream without a login', async () => {
    const { status } = await SseReader.open(hx.url + '/api/events', {});
    assert.equal(status, 401);
  });

  it('sends the status at once, then region deltas, session ends and audit entries', async () => {
    const { status, reader } = await SseReader.open(hx.url + '/api/events', { Cookie: c.cookie ?? '' });
    assert.equal(status, 200);
    try {
      const first = await reader.next((e) => e.event === 'status');
      assert.equal((first.data as { session: { number: number } }).session.number, 1);

      hx.service.write([10, 11, 12]);
      hx.service.write([12, 13]);
      const seen = new Map<number, number>();
      while (seen.size < 4) {
        const e = await reader.next((x) => x.event === 'regions');
        for (const [start, length, s] of (e.data as { runs: [number, number, number][] }).runs) for (let r = start; r < start + length; r++) seen.set(r, s);
      }
      assert.deepEqual([...seen.entries()].sort((a, b) => a[0] - b[0]), [10, 11, 12, 13].map((r) => [r, RegionState.written]));
      const st = await reader.next((e) => e.event === 'status' && (e.data as { regions: { writtenThisSession: number } }).regions.writtenThisSession === 4);
      assert.ok(st);

      const end = await c.req('POST', '/api/session/end', { body: {} });
      assert.equal(end.status, 202, end.text);
      const ended = await reader.next((e) => e.event === 'session-ended');
      assert.equal((ended.data as { number: number; endReason: string }).number, 1);
      const audit = await reader.next((e) => e.event === 'audit' && (e.data as { action: string }).action === 'session.end');
      assert.equal((audit.data as { actor: string }).actor, 'admin');
      // a session end replaces the whole map: one small event, the client refetches the map
      const replaced = await reader.next((e) => e.event === 'regions');
      assert.deepEqual(replaced.data, { replaced: true });
      const map = await c.req('GET', '/api/regions');
      assert.deepEqual([map.json.written, map.json.pending], [0, 4]);

      // The restore runs: the status shows the progress until nothing is pending.
      hx.service.hydrateStep(2);
      await reader.next((e) => e.event === 'status' && (e.data as { hydration: { done: number; running: boolean } }).hydration.done === 2);
      hx.service.hydrateStep(10);
      await reader.next((e) => e.event === 'status' && !(e.data as { hydration: { running: boolean } }).hydration.running);

      // Settings changes are pushed too.
      await controlRequest(hx.controlSocket, 'POST', '/api/settings', { hydrationRateBytesPerSecond: 1 << 20 });
      const s = await reader.next((e) => e.event === 'settings');
      assert.equal((s.data as { hydrationRateBytesPerSecond: number | null }).hydrationRateBytesPerSecond, 1 << 20);
    } finally {
      reader.close();
    }
  });

  it('tells the client the map was replaced when too many runs change at once', async () => {
    hx.service.close();
    await hx.close();
    hx = await startHarness({ fake: { regions: 65536 } });
    c = new Client(hx.url);
    await c.setup(PASSWORD);
    const { reader } = await SseReader.open(hx.url + '/api/events', { Cookie: c.cookie ?? '' });
    try {
      await reader.next((e) => e.event === 'status');
      // one long stretch is one run; 15,000 scattered regions are too many runs for one tick
      hx.service.write(Array.from({ length: 30_000 }, (_, i) => i));
      const one = await reader.next((x) => x.event === 'regions');
      assert.deepEqual(one.data, { runs: [[0, 30_000, RegionState.written]] });
      hx.service.write(Array.from({ length: 15_000 }, (_, i) => 30_001 + 2 * i));
      const e = await reader.next((x) => x.event === 'regions');
      assert.deepEqual(e.data, { replaced: true });
    } finally {
      reader.close();
    }
  });

  it('pushes model verification progress', async () => {
    const { reader } = await SseReader.open(hx.url + '/api/events', { Cookie: c.cookie ?? '' });
    try {
      await c.req('POST', '/api/model/verify', { body: {} });
      const done = await reader.next((e) => e.event === 'model-verify' && (e.data as { state: string }).state === 'passed');
      assert.equal((done.data as { regionsDone: number }).regionsDone, 4096);
    } finally {
      reader.close();
    }
  });

  it('closes the stream when the login ends (logout)', async () => {
    const { reader } = await SseReader.open(hx.url + '/api/events', { Cookie: c.cookie ?? '' });
    await reader.next((e) => e.event === 'status');
    assert.equal((await c.req('POST', '/api/auth/logout')).status, 204);
    await reader.closed();
    assert.equal(reader.ended, true);
  });

  it('a token-authenticated stream works (for scripts)', async () => {
    const t = await c.req('POST', '/api/tokens', { body: { name: 'dash' } });
    const { status, reader } = await SseReader.open(hx.url + '/api/events', { Authorization: `Bearer ${t.json.token}` });
    assert.equal(status, 200);
    await reader.next((e) => e.event === 'status');
    reader.close();
  });

  it('revoking an API token closes its open stream', async () => {
    const t = await c.req('POST', '/api/tokens', { body: { name: 'dash' } });
    const other = await c.req('POST', '/api/tokens', { body: { name: 'other' } });
    const { reader } = await SseReader.open(hx.url + '/api/events', { Authorization: `Bearer ${t.json.token}` });
    const { reader: otherReader } = await SseReader.open(hx.url + '/api/events', { Authorization: `Bearer ${other.json.token}` });
    try {
      await reader.next((e) => e.event === 'status');
      await otherReader.next((e) => e.event === 'status');
      assert.equal((await c.req('DELETE', `/api/tokens/${t.json.id}`)).status, 204);
      await reader.closed();
      assert.equal(reader.ended, true);
      // The other token's stream still gets events (the revocation's audit entry, for one).
      const e = await otherReader.next((x) => x.event === 'audit' && (x.data as { action: string }).action === 'token.revoke');
      assert.ok(e);
      assert.equal(otherReader.ended, false);
    } finally {
      reader.close();
      otherReader.close();
    }
  });

  it('an expired login closes its open stream', async () => {
    await hx.close();
    let now = Date.now();
    hx = await startHarness({ http: { logins: { now: () => now }, loginPruneIntervalMs: 20 } });
    c = new Client(hx.url);
    await c.setup(PASSWORD);
    const { reader } = await SseReader.open(hx.url + '/api/events', { Cookie: c.cookie ?? '' });
    try {
      await reader.next((e) => e.event === 'status');
      now += 8 * 24 * 3600_000; // past the 7-day lifetime of a login
      await reader.closed();
      assert.equal(reader.ended, true);
      assert.equal((await c.req('GET', '/api/status')).status, 401);
    } finally {
      reader.close();
    }
  });
});
