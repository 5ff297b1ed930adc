/**
 * The region log on logs of many bitmap sectors (the crash tests' small disks fit in one):
 * commits that span gaps of clean sectors, O(1) session ends, and reopening from what is on disk.
 */
import assert from 'node:assert/strict';
import { Prng } from '../helpers/prng.js';
import { memoryDevice } from '../helpers/fault-device.js';
import { RegionLog, logFileSize, REGIONS_PER_SECTOR } from '../../appliance/storage/region-log.js';
describe('region log across many bitmap sectors', () => {
    const regionCount = REGIONS_PER_SECTOR * 40 + 77;
    const init = { modelId: 'cd'.repeat(32), regionSize: 4096, diskSize: regionCount * 4096, sessionNumber: 1, sessionStartedAt: 0, mode: 'frozen', restoreMode: 'instant' };
    it('persists marks spread over sectors with gaps, and only those', async () => {
        const rng = new Prng(11);
        const dev = memoryDevice('log', Buffer.alloc(logFileSize(regionCount)));
        const log = await RegionLog.create(dev, init, false);
        const marked = new Set();
        for (let round = 0; round < 20; round++) {
            const waits = [];
            for (let i = 0; i < 50; i++) {
                // clusters of sectors with gaps between them
                const sector = rng.pick([0, 1, 5, 9, 10, 17, 30, 39, 40]);
                const r = Math.min(regionCount - 1, sector * REGIONS_PER_SECTOR + rng.int(REGIONS_PER_SECTOR));
                const p = log.markForWrite(r);
                marked.add(r);
                if (p)
                    waits.push(p);
            }
            await Promise.all(waits);
        }
        const devB = memoryDevice('log', dev.snapshot());
        const { log: re } = await RegionLog.open(devB);
        for (let r = 0; r < regionCount; r++) {
            assert.equal(re.isDirty(r), marked.has(r), `D of region ${r}`);
            assert.equal(re.isWritten(r), marked.has(r), `S of region ${r}`);
        }
        assert.equal(re.writtenCount, marked.size);
        // a session end lapses every S bit at once, in one header write
        devB.keepJournal = true;
        await re.endSession(false);
        assert.deepEqual(devB.journal, ['write 4096+512', 'flush'], 'one header write (to the other slot, B) and one flush');
        const { log: re2 } = await RegionLog.open(memoryDevice('log', devB.snapshot()));
        for (const r of marked)
            assert.ok(re2.isPending(r));
        assert.equal(re2.pendingCount, marked.size);
    });
});
//# sourceMappingURL=region-log.test.js.map