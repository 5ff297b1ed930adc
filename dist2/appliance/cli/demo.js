/**
 * `snapback demo`: the appliance on a laptop or CI, with no Pi. Creates, in a local state
 * directory, a demo model (a partitioned disk with a FAT filesystem and a few files), its
 * manifest and a working disk, then starts the daemon and prints how to point an NBD client or
 * a QEMU machine at it. Run again, it reuses what it made.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeDemoModel } from './demo-disk.js';
import { createManifest, manifestPathFor } from '../storage/manifest.js';
import { initEngine } from '../storage/engine.js';
import { StateDir } from '../storage/state-dir.js';
export async function runDemo(opts) {
    const dir = resolve(opts.dir);
    mkdirSync(dir, { recursive: true });
    const model = join(dir, 'demo-model.img');
    const stateDir = join(dir, 'state');
    if (!existsSync(model)) {
        await writeDemoModel(model);
        const m = await createManifest(model, { name: 'demo-model.img' });
        await m.save(manifestPathFor(model));
    }
    if (!new StateDir(stateDir).initialised) {
        await initEngine({ stateDir, model, disk: join(dir, 'working-disk.img') });
    }
    const daemon = await opts.start({ stateDir, httpListen: opts.httpListen, gadget: 'off', gpio: 'auto' });
    const sock = join(stateDir, 'nbd.sock');
    process.stdout.write([
        '',
        `Demo state in ${dir}. Open the web UI above and set the administrator password.`,
        'Point an NBD client at the disk:',
        `  nbdinfo 'nbd+unix:///snapback?socket=${sock}'`,
        `  qemu-img info 'nbd+unix:///snapback?socket=${sock}'`,
        'or boot a QEMU machine from it as a USB stick:',
        `  qemu-system-x86_64 -m 512 -blockdev driver=nbd,server.type=unix,server.path=${sock},export=snapback,node-name=d0 \\`,
        '    -device qemu-xhci,id=xhci -device usb-storage,bus=xhci.0,drive=d0,removable=on,bootindex=1',
        `End the host session: SNAPBACK_STATE_DIR=${stateDir} node dist/appliance/cli/main.js session end --wait`,
        '',
    ].join('\n'));
    return daemon;
}
//# sourceMappingURL=demo.js.map