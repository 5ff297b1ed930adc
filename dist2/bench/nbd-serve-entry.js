/**
 * A child-process entry that serves one image with Snapback's NBD server, so benchmarks and
 * tests measure it in its own process (as the daemon runs), not inside the caller.
 *
 *   node dist/bench/nbd-serve-entry.js --image PATH --socket PATH [--read-only]
 *        [--max-block-size N] [--handshake-timeout-ms N] [--device-module FILE.js]
 *
 * --device-module names an ES module exporting `makeDevice(imagePath): Promise<BlockDevice>`
 * (an opened device); by default the image is served through FileDevice.
 * Prints one JSON line {"ready":true,"pid":N} on stdout once listening. With an IPC channel it
 * answers {type:'stats'} with {type:'stats', memory: process.memoryUsage()} (after a GC when
 * node runs with --expose-gc). SIGTERM/SIGINT: close the server, close the device, exit 0.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NbdServer } from '../appliance/nbd/index.js';
import { FileDevice } from '../appliance/storage/file-device.js';
async function defaultMakeDevice(imagePath, readOnly) {
    const dev = new FileDevice(imagePath, { readOnly });
    await dev.open();
    return dev;
}
async function main() {
    const { values } = parseArgs({
        options: {
            image: { type: 'string' },
            socket: { type: 'string' },
            'read-only': { type: 'boolean', default: false },
            'max-block-size': { type: 'string' },
            'handshake-timeout-ms': { type: 'string' },
            'device-module': { type: 'string' },
        },
    });
    if (!values.image || !values.socket)
        throw new Error('usage: nbd-serve-entry --image PATH --socket PATH');
    const imagePath = values.image;
    let device;
    if (values['device-module']) {
        const mod = (await import(pathToFileURL(resolve(values['device-module'])).href));
        if (typeof mod.makeDevice !== 'function')
            throw new Error(`${values['device-module']} does not export makeDevice`);
        device = await mod.makeDevice(imagePath);
    }
    else {
        device = await defaultMakeDevice(imagePath, values['read-only']);
    }
    const server = new NbdServer({
        device,
        readOnly: values['read-only'],
        ...(values['max-block-size'] ? { maxBlockSize: Number(values['max-block-size']) } : {}),
    }, values['handshake-timeout-ms'] ? { handshakeTimeoutMs: Number(values['handshake-timeout-ms']) } : {});
    await server.listenUnix(values.socket);
    const gc = globalThis.gc;
    process.on('message', (msg) => {
        if (msg?.type !== 'stats')
            return;
        gc?.();
        process.send?.({ type: 'stats', memory: process.memoryUsage(), clients: server.clientCount });
    });
    let stopping = false;
    const stop = () => {
        if (stopping)
            return;
        stopping = true;
        void server
            .close()
            .then(() => device.close())
            .then(() => process.exit(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('disconnect', stop);
    process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
}
main().catch((err) => {
    process.stderr.write(`nbd-serve-entry: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
});
//# sourceMappingURL=nbd-serve-entry.js.map