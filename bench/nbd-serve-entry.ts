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
 * answers {type:'stats'} with {type:'stats', memory: process.memoryUsage(), clients, inlineIo}
 * (after a GC when node runs with --expose-gc): inlineIo is the served file's inline I/O
 * counters (calls, slow, off: appliance/storage/inline-io.ts), from a FileDevice or from a
 * device that offers them as `inlineIoStats`. SIGTERM/SIGINT: close the server, close the
 * device, exit 0.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NbdServer } from '../appliance/nbd/index.js';
import { FileDevice } from '../appliance/storage/file-device.js';
import type { BlockDevice } from '../appliance/storage/block-device.js';
import type { InlineIo } from '../appliance/storage/inline-io.js';

type MakeDevice = (imagePath: string) => Promise<BlockDevice>;

/** The inline I/O counters of the file behind `device`, where it has them. */
function inlineIoStats(device: BlockDevice): InlineIo['stats'] | undefined {
  if (device instanceof FileDevice) return device.inlineIo?.stats;
  return (device as { inlineIoStats?: InlineIo['stats'] }).inlineIoStats;
}

async function defaultMakeDevice(imagePath: string, readOnly: boolean): Promise<BlockDevice> {
  const dev = new FileDevice(imagePath, { readOnly });
  await dev.open();
  return dev;
}

async function main(): Promise<void> {
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
  if (!values.image || !values.socket) throw new Error('usage: nbd-serve-entry --image PATH --socket PATH');
  const imagePath = values.image;
  let device: BlockDevice;
  if (values['device-module']) {
    const mod = (await import(pathToFileURL(resolve(values['device-module'])).href)) as { makeDevice?: MakeDevice };
    if (typeof mod.makeDevice !== 'function') throw new Error(`${values['device-module']} does not export makeDevice`);
    device = await mod.makeDevice(imagePath);
  } else {
    device = await defaultMakeDevice(imagePath, values['read-only']);
  }
  const server = new NbdServer(
    {
      device,
      readOnly: values['read-only'],
      ...(values['max-block-size'] ? { maxBlockSize: Number(values['max-block-size']) } : {}),
    },
    values['handshake-timeout-ms'] ? { handshakeTimeoutMs: Number(values['handshake-timeout-ms']) } : {},
  );
  await server.listenUnix(values.socket);

  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', (msg: unknown) => {
    if ((msg as { type?: string } | null)?.type !== 'stats') return;
    gc?.();
    process.send?.({ type: 'stats', memory: process.memoryUsage(), clients: server.clientCount, inlineIo: inlineIoStats(device) });
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
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

main().catch((err: unknown) => {
  process.stderr.write(`nbd-serve-entry: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
