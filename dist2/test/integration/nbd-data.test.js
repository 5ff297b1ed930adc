/**
 * Data through the NBD server with real clients: nbdcopy (out, in, back out; several request
 * sizes and connections) and qemu-io / qemu-img (reads, writes, FUA, flush, discard,
 * write-zeroes, unaligned I/O). The server's image file is checked byte for byte.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nbdcopy, qemuImg, qemuIo, startServer } from '../helpers/nbd-clients.js';
const SIZE = 32 * 1024 * 1024;
function firstDifference(a, b) {
    if (a.length !== b.length)
        return Math.min(a.length, b.length);
    for (let i = 0; i < a.length; i++)
        if (a[i] !== b[i])
            return i;
    return -1;
}
function assertSameBytes(actual, expected, what) {
    const at = firstDifference(actual, expected);
    assert.equal(at, -1, `${what}: first difference at byte ${at} (lengths ${actual.length}/${expected.length})`);
}
/** qemu-io prints failures on stdout and (recent versions) exits non-zero; check both. */
function assertQemuIoOk(out) {
    assert.doesNotMatch(out.stdout + out.stderr, /fail|error|mismatch/i, out.stdout + out.stderr);
}
for (const directReceive of [true, false])
    describe(`NBD server: data with nbdcopy (${directReceive ? 'direct receive' : "'data' events"})`, function () {
        let fx;
        let model;
        before(async function () {
            fx = await startServer({ size: SIZE, tuning: { directReceive } });
            model = await readFile(fx.imagePath);
        });
        after(async function () {
            await fx?.stop();
        });
        it('copies the image out byte-identical', async function () {
            const out = join(fx.dir.path, 'out.img');
            await nbdcopy(fx.uri, out, ['--no-extents']);
            assertSameBytes(await readFile(out), model, 'copied out');
        });
        it('copies a random image in and back out byte-identical, for several request sizes and connections', async function () {
            const cases = [
                ['-C', '1', '-R', '16', '--request-size=1048576'],
                ['-C', '1', '-R', '64', '--request-size=4096'],
                ['-C', '4', '-R', '8', '--request-size=131072'],
            ];
            for (const [i, opts] of cases.entries()) {
                const src = join(fx.dir.path, `random-${i}.img`);
                const data = randomBytes(SIZE);
                await writeFile(src, data);
                await nbdcopy(src, fx.uri, [...opts, '--flush']);
                assertSameBytes(await readFile(fx.imagePath), data, `server image after copy in (${opts.join(' ')})`);
                const back = join(fx.dir.path, `back-${i}.img`);
                await nbdcopy(fx.uri, back, [...opts, '--no-extents']);
                assertSameBytes(await readFile(back), data, `copied back out (${opts.join(' ')})`);
            }
        });
    });
describe('NBD server: qemu-io and qemu-img', function () {
    let fx;
    before(async function () {
        fx = await startServer({ size: SIZE, fill: 'zero' });
    });
    after(async function () {
        await fx?.stop();
    });
    it('writes (plain, FUA, unaligned), reads them back, flushes', async function () {
        const out = await qemuIo(fx.uri, [
            'write -P 0x11 0 1M',
            'write -f -P 0x22 1M 64k', // FUA
            'write -P 0x33 5000 3333', // unaligned offset and length
            'write -P 0x44 2M 4M',
            'aio_write -P 0x55 8M 128k',
            'aio_write -P 0x56 9M 128k',
            'aio_flush',
            'flush',
            'read -P 0x11 0 4096',
            'read -P 0x11 8333 1040000',
            'read -P 0x33 5000 3333',
            'read -P 0x22 1M 64k',
            'read -P 0x44 2M 4M',
            'read -P 0x55 8M 128k',
            'read -P 0x56 9M 128k',
            'read -P 0x11 4999 1', // unaligned read around the unaligned write
            'read -P 0x11 8333 1',
        ]);
        assertQemuIoOk(out);
        const img = await readFile(fx.imagePath);
        assert.equal(img[4999], 0x11);
        assert.ok(img.subarray(5000, 8333).every((b) => b === 0x33));
        assert.equal(img[8333], 0x11);
        assert.ok(img.subarray(1 << 20, (1 << 20) + 65536).every((b) => b === 0x22));
    });
    it('write-zeroes (with and without NO_HOLE) and discard', async function () {
        const out = await qemuIo(fx.uri, [
            'write -P 0x77 12M 2M',
            'write -z 12M 256k', // WRITE_ZEROES with NO_HOLE (qemu may not unmap)
            'write -z -u 13M 256k', // WRITE_ZEROES allowing holes
            'discard 14M 64k', // TRIM
            'read -P 0 12M 256k',
            'read -P 0x77 12544k 768k',
            'read -P 0 13M 256k',
            'read -P 0x77 13568k 256k',
            'flush',
        ]);
        assertQemuIoOk(out);
        const img = await readFile(fx.imagePath);
        assert.ok(img.subarray(12 << 20, (12 << 20) + 262144).every((b) => b === 0));
        assert.ok(img.subarray((12 << 20) + 262144, 13 << 20).every((b) => b === 0x77));
        // After a TRIM the bytes are old or zero (BlockDevice contract): each byte is one of them.
        assert.ok(img.subarray(14 << 20, (14 << 20) + 65536).every((b) => b === 0 || b === 0x77));
    });
    it('qemu-img info, convert out and in, compare', async function () {
        const info = JSON.parse((await qemuImg(['info', '--output=json', fx.uri])).stdout);
        assert.equal(info['virtual-size'], SIZE);
        const src = join(fx.dir.path, 'src.raw');
        const data = randomBytes(SIZE);
        await writeFile(src, data);
        await qemuImg(['convert', '-n', '-f', 'raw', '-O', 'raw', src, fx.uri]);
        await qemuImg(['compare', '-f', 'raw', '-F', 'raw', src, fx.uri]);
        const out = join(fx.dir.path, 'out.raw');
        await qemuImg(['convert', '-f', 'raw', '-O', 'raw', fx.uri, out]);
        assertSameBytes(await readFile(out), data, 'qemu-img convert out');
        assertSameBytes(await readFile(fx.imagePath), data, 'server image');
    });
});
//# sourceMappingURL=nbd-data.test.js.map