/**
 * Per-region exclusive locks. Taken around every transition of a pending region (a host write
 * merging into it, the hydrator restoring it) so that two such transitions never interleave.
 * Regions are locked in ascending order, so two lockers can never deadlock.
 */
export class RegionLocks {
    held = new Map();
    get size() {
        return this.held.size;
    }
    isLocked(region) {
        return this.held.has(region);
    }
    /** Resolves when region is next released (at once if it is free). */
    async released(region) {
        await this.held.get(region);
    }
    /** Locks every region in `regions`; resolves with a function that releases them all. */
    async acquire(regions) {
        const sorted = [...new Set(regions)].sort((a, b) => a - b);
        const releases = [];
        for (const r of sorted) {
            for (;;) {
                const current = this.held.get(r);
                if (!current)
                    break;
                await current;
            }
            let release;
            const p = new Promise((res) => (release = res));
            this.held.set(r, p);
            releases.push(() => {
                if (this.held.get(r) === p)
                    this.held.delete(r);
                release();
            });
        }
        return () => {
            for (const rel of releases)
                rel();
        };
    }
    /** Locks the regions that are free right now and returns them (never waits). */
    tryAcquire(regions) {
        const locked = [];
        const releases = [];
        for (const r of regions) {
            if (this.held.has(r))
                continue;
            let release;
            const p = new Promise((res) => (release = res));
            this.held.set(r, p);
            locked.push(r);
            releases.push(() => {
                if (this.held.get(r) === p)
                    this.held.delete(r);
                release();
            });
        }
        return { locked, release: () => releases.forEach((f) => f()) };
    }
}
//# sourceMappingURL=region-locks.js.map