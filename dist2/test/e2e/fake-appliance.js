/**
 * A small in-process ApplianceService for the HTTP and web UI tests: a region map, sessions,
 * modes and a background "restore" that the test drives (or lets run on a timer), plus the
 * optional model verification. No disk, no NBD: just the contract the HTTP side depends on.
 */
import { EventEmitter } from 'node:events';
import { RegionState, } from '../../appliance/session/appliance-service.js';
import { bytesStateSource, encodeRegionMap, runsOf } from '../../appliance/session/region-map-codec.js';
export class FakeAppliance extends EventEmitter {
    regionSize;
    map;
    mode = 'frozen';
    restoreMode = 'instant';
    hydrationRate = null;
    sessionNumber = 1;
    sessionStartedAt = new Date().toISOString();
    history = [];
    calls = [];
    host = 'nbd-only';
    nbdClients = 1;
    hydrating = false;
    totalAtStart = 0;
    done = 0;
    bytesThisSession = 0;
    verify = { state: 'idle', startedAt: null, finishedAt: null, regionsTotal: 0, regionsDone: 0, bytesPerSecond: 0, badRegions: [], error: null };
    #auto;
    #verifyTicks;
    #timer = null;
    /** Pending regions lie at or after this index (the restore walks the disk once). */
    #hydrateFrom = 0;
    #verifyTimer = null;
    #events = [];
    constructor(opts = {}) {
        super();
        this.regionSize = opts.regionSize ?? 65536;
        this.map = new Uint8Array(opts.regions ?? 4096);
        this.#auto = opts.autoHydrate ?? null;
        this.#verifyTicks = opts.verifyTicks ?? 10;
    }
    close() {
        if (this.#timer)
            clearInterval(this.#timer);
        if (this.#verifyTimer)
            clearInterval(this.#verifyTimer);
        this.#timer = this.#verifyTimer = null;
    }
    // ---- ApplianceService ----
    status() {
        let written = 0;
        let pending = 0;
        for (const v of this.map) {
            if (v === RegionState.written)
                written++;
            else if (v === RegionState.pending)
                pending++;
        }
        const size = this.map.length * this.regionSize;
        return {
            mode: this.mode,
            restoreMode: this.restoreMode,
            session: { number: this.sessionNumber, startedAt: this.sessionStartedAt },
            regions: { total: this.map.length, regionSize: this.regionSize, writtenThisSession: written, pending, clean: this.map.length - written - pending },
            bytesChangedThisSession: this.bytesThisSession,
            hydration: {
                running: this.hydrating,
                totalAtStart: this.totalAtStart,
                done: this.done,
                pendingRegions: pending,
                bytesPerSecond: this.hydrating ? 48 * 1024 * 1024 : 0,
                etaSeconds: this.hydrating ? Math.ceil((pending * this.regionSize) / (48 * 1024 * 1024)) : null,
                rateLimitBytesPerSecond: this.hydrationRate,
            },
            host: { connection: this.host, nbdClients: this.nbdClients, gadget: null },
            model: { id: 'sha256:' + 'ab12'.repeat(16), name: 'lab-image-2024', size, regionSize: this.regionSize },
            disk: { path: '/var/lib/snapback/working.img', size, ioErrors: 0 },
            stateDir: { path: '/var/lib/snapback', freeBytes: 12 * 1024 ** 3 },
            daemon: { startedAt: this.sessionStartedAt, pid: process.pid, version: '0.1.0-test' },
        };
    }
    async endSession(reason, note) {
        this.calls.push(`endSession:${reason}${note ? `:${note}` : ''}`);
        const now = new Date().toISOString();
        let written = 0;
        for (let i = 0; i < this.map.length; i++) {
            if (this.map[i] === RegionState.written) {
                written++;
                // Thawed: changes stay (D kept, S cleared): shown as clean-but-kept in this fake.
                this.map[i] = this.mode === 'frozen' ? RegionState.pending : RegionState.clean;
            }
        }
        this.#hydrateFrom = 0;
        const rec = {
            number: this.sessionNumber,
            startedAt: this.sessionStartedAt,
            endedAt: now,
            endReason: reason,
            mode: this.mode,
            regionsWritten: written,
            bytesWritten: this.bytesThisSession,
            sessionEndMs: 12,
            restoreMs: null,
            events: this.#events.splice(0),
        };
        this.history.push(rec);
        this.sessionNumber++;
        this.sessionStartedAt = now;
        this.bytesThisSession = 0;
        // like the session manager: the whole map changed, never one object per region
        if (written)
            this.emit('regions-replaced');
        this.#startHydration();
        this.emit('session-ended', structuredClone(rec));
        this.emit('status');
        return structuredClone(rec);
    }
    async setMode(mode) {
        this.calls.push(`setMode:${mode}`);
        this.mode = mode;
        this.emit('status');
    }
    async setRestoreMode(mode) {
        this.calls.push(`setRestoreMode:${mode}`);
        this.restoreMode = mode;
        this.emit('status');
    }
    setHydrationRate(bytesPerSecond) {
        this.calls.push(`setHydrationRate:${bytesPerSecond}`);
        this.hydrationRate = bytesPerSecond;
        this.emit('status');
    }
    async regionMap() {
        return encodeRegionMap(bytesStateSource(this.map));
    }
    sessions() {
        const current = {
            number: this.sessionNumber,
            startedAt: this.sessionStartedAt,
            endedAt: null,
            endReason: null,
            mode: this.mode,
            regionsWritten: this.status().regions.writtenThisSession,
            bytesWritten: this.bytesThisSession,
            sessionEndMs: null,
            restoreMs: null,
            events: [...this.#events],
        };
        return [...structuredClone(this.history), current];
    }
    recordHostEvent(what) {
        this.#events.push({ at: new Date().toISOString(), what });
    }
    addSessionEndParticipant(_p) { }
    setHostConnection(state, _gadget) {
        this.host = state;
        this.emit('status');
    }
    // ---- model verification ----
    startModelVerify() {
        this.calls.push('startModelVerify');
        this.verify = {
            state: 'running',
            startedAt: new Date().toISOString(),
            finishedAt: null,
            regionsTotal: this.map.length,
            regionsDone: 0,
            bytesPerSecond: 80 * 1024 * 1024,
            badRegions: [],
            error: null,
        };
        const step = Math.ceil(this.map.length / this.#verifyTicks);
        this.#verifyTimer = setInterval(() => {
            this.verify.regionsDone = Math.min(this.map.length, this.verify.regionsDone + step);
            if (this.verify.regionsDone >= this.map.length) {
                this.verify.state = 'passed';
                this.verify.finishedAt = new Date().toISOString();
                if (this.#verifyTimer)
                    clearInterval(this.#verifyTimer);
                this.#verifyTimer = null;
            }
            this.emit('model-verify', { ...this.verify });
        }, 100);
        return { ...this.verify };
    }
    modelVerifyStatus() {
        return { ...this.verify };
    }
    // ---- test controls ----
    /** The host writes these regions (marks them written this session). */
    write(regions, bytesPerRegion = this.regionSize) {
        const changed = [];
        for (const r of regions) {
            if (r < 0 || r >= this.map.length)
                continue;
            if (this.map[r] !== RegionState.written) {
                this.map[r] = RegionState.written;
                changed.push(r);
            }
            this.bytesThisSession += bytesPerRegion;
        }
        this.#emitRuns(changed);
        this.emit('status');
    }
    /** Restores up to n pending regions; returns how many. */
    hydrateStep(n) {
        const changes = [];
        let i = this.#hydrateFrom;
        for (; i < this.map.length && changes.length < n; i++) {
            if (this.map[i] === RegionState.pending) {
                this.map[i] = RegionState.clean;
                changes.push(i);
            }
        }
        this.#hydrateFrom = i;
        this.done += changes.length;
        this.#emitRuns(changes);
        if (!this.status().regions.pending && this.hydrating) {
            this.hydrating = false;
            const last = this.history[this.history.length - 1];
            if (last && last.restoreMs === null)
                last.restoreMs = 1500;
        }
        this.emit('status');
        return changes.length;
    }
    /** Region changes go out as runs of their current state, as from the session manager. */
    #emitRuns(regions) {
        if (!regions.length)
            return;
        const sorted = Float64Array.from(new Set(regions)).sort();
        this.emit('regions', runsOf(sorted, (r) => this.map[r] ?? RegionState.clean));
    }
    #startHydration() {
        const pending = this.status().regions.pending;
        if (!pending)
            return;
        this.hydrating = true;
        this.totalAtStart = pending;
        this.done = 0;
        const auto = this.#auto;
        if (auto && !this.#timer) {
            this.#timer = setInterval(() => {
                this.hydrateStep(auto.regionsPerTick);
                if (!this.hydrating && this.#timer) {
                    clearInterval(this.#timer);
                    this.#timer = null;
                }
            }, auto.tickMs);
        }
    }
}
//# sourceMappingURL=fake-appliance.js.map