const TICK_MS = 250;
const HEARTBEAT_MS = 15_000;
const MAX_CLIENTS = 32;
const MAX_BUFFERED = 1 << 20;
const MAX_REGION_RUNS = 10_000;
export class LiveEvents {
    #service;
    #store;
    #clients = new Set();
    #statusDirty = false;
    #regionRuns = [];
    #regionsReplaced = false;
    #tick = null;
    #heartbeat = null;
    #unsubscribe = [];
    constructor(service, store) {
        this.#service = service;
        this.#store = store;
    }
    start() {
        if (this.#tick)
            return;
        const on = (em, ev, fn) => {
            const h = fn;
            em.on(ev, h);
            this.#unsubscribe.push(() => em.off(ev, h));
        };
        on(this.#service, 'status', () => {
            this.#statusDirty = true;
        });
        on(this.#service, 'regions', (runs) => {
            if (this.#regionsReplaced)
                return;
            for (const r of runs)
                this.#regionRuns.push(r);
            if (this.#regionRuns.length > MAX_REGION_RUNS)
                this.#replaceRegions();
        });
        on(this.#service, 'regions-replaced', () => this.#replaceRegions());
        on(this.#service, 'session-ended', (r) => {
            this.#statusDirty = true;
            this.broadcast('session-ended', r);
        });
        on(this.#service, 'model-verify', (s) => this.broadcast('model-verify', s));
        on(this.#store, 'audit', (e) => this.broadcast('audit', e));
        on(this.#store, 'settings', (s) => this.broadcast('settings', s));
        this.#tick = setInterval(() => this.#flush(), TICK_MS);
        this.#tick.unref();
        this.#heartbeat = setInterval(() => this.#send(': ping\n\n'), HEARTBEAT_MS);
        this.#heartbeat.unref();
    }
    stop() {
        for (const u of this.#unsubscribe.splice(0))
            u();
        if (this.#tick)
            clearInterval(this.#tick);
        if (this.#heartbeat)
            clearInterval(this.#heartbeat);
        this.#tick = this.#heartbeat = null;
        for (const c of [...this.#clients])
            this.#drop(c);
    }
    get clientCount() {
        return this.#clients.size;
    }
    /** Takes over `res` as an event stream. False when there are too many streams already. */
    attach(res, sessionId) {
        if (this.#clients.size >= MAX_CLIENTS)
            return false;
        res.status(200);
        res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('X-Accel-Buffering', 'no');
        res.flushHeaders();
        res.socket?.setNoDelay(true);
        const c = { res, sessionId };
        this.#clients.add(c);
        res.on('close', () => this.#clients.delete(c));
        this.#write(c, 'retry: 3000\n\n');
        this.#write(c, frame('status', this.#service.status()));
        return true;
    }
    /** Closes the streams of a login session that ended (logout, password change). */
    dropSession(sessionId) {
        for (const c of [...this.#clients])
            if (c.sessionId === sessionId)
                this.#drop(c);
    }
    broadcast(event, data) {
        if (this.#clients.size === 0)
            return;
        this.#send(frame(event, data));
    }
    #flush() {
        if (this.#clients.size === 0) {
            this.#statusDirty = false;
            this.#regionRuns = [];
            this.#regionsReplaced = false;
            return;
        }
        if (this.#regionsReplaced) {
            this.#regionsReplaced = false;
            this.#send(frame('regions', { replaced: true }));
        }
        else if (this.#regionRuns.length) {
            const runs = this.#regionRuns;
            this.#regionRuns = [];
            this.#send(frame('regions', { runs }));
        }
        if (this.#statusDirty) {
            this.#statusDirty = false;
            this.#send(frame('status', this.#service.status()));
        }
    }
    #replaceRegions() {
        this.#regionsReplaced = true;
        this.#regionRuns = [];
    }
    #send(text) {
        for (const c of [...this.#clients])
            this.#write(c, text);
    }
    #write(c, text) {
        if (c.res.writableLength > MAX_BUFFERED) {
            this.#drop(c);
            return;
        }
        c.res.write(text);
    }
    #drop(c) {
        this.#clients.delete(c);
        c.res.end();
    }
}
function frame(event, data) {
    return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
//# sourceMappingURL=live-events.js.map