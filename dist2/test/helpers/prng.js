/** A small seeded PRNG (mulberry32) so every randomised test is reproducible from its seed. */
export class Prng {
    seed;
    s;
    constructor(seed) {
        this.seed = seed;
        this.s = seed >>> 0;
    }
    next() {
        let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    }
    int(n) {
        return Math.floor(this.next() * n);
    }
    range(lo, hi) {
        return lo + this.int(hi - lo + 1);
    }
    chance(p) {
        return this.next() < p;
    }
    pick(xs) {
        return xs[this.int(xs.length)];
    }
    bytes(n) {
        const b = Buffer.allocUnsafe(n);
        for (let i = 0; i < n; i++)
            b[i] = this.int(256);
        return b;
    }
}
//# sourceMappingURL=prng.js.map