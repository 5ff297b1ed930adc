/**
 * Builds the demo model: an MBR-partitioned disk with one FAT16 partition holding a few files,
 * written directly (no mkfs or mtools needed, so the demo runs on any laptop). Any OS can mount
 * it, and the README shows it served to QEMU or an NBD client.
 */
import { writeFile } from 'node:fs/promises';
const SECTOR = 512;
export function buildFat16Disk(totalBytes, files) {
    const disk = Buffer.alloc(totalBytes);
    const partStart = 2048;
    const partSectors = totalBytes / SECTOR - partStart;
    const spc = 4; // 2 KiB clusters
    const reserved = 4;
    const rootEntries = 512;
    const rootSectors = (rootEntries * 32) / SECTOR;
    let fatSectors = 1;
    for (;;) {
        const clusters = Math.floor((partSectors - reserved - 2 * fatSectors - rootSectors) / spc);
        const need = Math.ceil(((clusters + 2) * 2) / SECTOR);
        if (need <= fatSectors)
            break;
        fatSectors = need;
    }
    const clusters = Math.floor((partSectors - reserved - 2 * fatSectors - rootSectors) / spc);
    if (clusters < 4085 || clusters > 65524)
        throw new Error(`a ${totalBytes}-byte demo disk does not fit FAT16 (${clusters} clusters)`);
    // MBR: one partition, type 0x06 (FAT16 > 32 MiB), bootable
    const mbr = disk.subarray(0, SECTOR);
    const pe = 446;
    mbr[pe] = 0x80;
    mbr.writeUInt8(0xfe, pe + 1);
    mbr.writeUInt16LE(0xffff, pe + 2);
    mbr[pe + 4] = 0x06;
    mbr.writeUInt8(0xfe, pe + 5);
    mbr.writeUInt16LE(0xffff, pe + 6);
    mbr.writeUInt32LE(partStart, pe + 8);
    mbr.writeUInt32LE(partSectors, pe + 12);
    mbr.writeUInt32LE(0x534e4150, 440); // disk signature
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    // boot sector with the BIOS parameter block
    const p = partStart * SECTOR;
    const bs = disk.subarray(p, p + SECTOR);
    bs.set([0xeb, 0x3c, 0x90]);
    bs.write('SNAPBACK', 3, 'latin1');
    bs.writeUInt16LE(SECTOR, 11);
    bs[13] = spc;
    bs.writeUInt16LE(reserved, 14);
    bs[16] = 2;
    bs.writeUInt16LE(rootEntries, 17);
    if (partSectors < 65536)
        bs.writeUInt16LE(partSectors, 19);
    else
        bs.writeUInt32LE(partSectors, 32);
    bs[21] = 0xf8;
    bs.writeUInt16LE(fatSectors, 22);
    bs.writeUInt16LE(63, 24);
    bs.writeUInt16LE(255, 26);
    bs.writeUInt32LE(partStart, 28);
    bs[36] = 0x80;
    bs[38] = 0x29;
    bs.writeUInt32LE(0x20261125, 39);
    bs.write('SNAPBACK   ', 43, 'latin1');
    bs.write('FAT16   ', 54, 'latin1');
    bs[510] = 0x55;
    bs[511] = 0xaa;
    const fat0 = p + reserved * SECTOR;
    const rootAt = fat0 + 2 * fatSectors * SECTOR;
    const dataAt = rootAt + rootSectors * SECTOR;
    const fat = Buffer.alloc(fatSectors * SECTOR);
    fat.writeUInt16LE(0xfff8, 0);
    fat.writeUInt16LE(0xffff, 2);
    const root = Buffer.alloc(rootSectors * SECTOR);
    root.write('SNAPBACK   ', 0, 'latin1');
    root[11] = 0x08; // volume label
    let next = 2;
    const clusterBytes = spc * SECTOR;
    files.forEach((f, i) => {
        const n = Math.max(1, Math.ceil(f.data.length / clusterBytes));
        const first = next;
        for (let c = 0; c < n; c++)
            fat.writeUInt16LE(c === n - 1 ? 0xffff : first + c + 1, (first + c) * 2);
        f.data.copy(disk, dataAt + (first - 2) * clusterBytes);
        next += n;
        const e = root.subarray((i + 1) * 32, (i + 2) * 32);
        const [base, ext = ''] = f.name.split('.');
        e.write((base ?? '').padEnd(8, ' ').slice(0, 8) + ext.padEnd(3, ' ').slice(0, 3), 0, 'latin1');
        e[11] = 0x20;
        const date = ((2026 - 1980) << 9) | (11 << 5) | 25;
        e.writeUInt16LE(date, 16);
        e.writeUInt16LE(date, 24);
        e.writeUInt16LE(12 << 11, 22);
        e.writeUInt16LE(first, 26);
        e.writeUInt32LE(f.data.length, 28);
    });
    fat.copy(disk, fat0);
    fat.copy(disk, fat0 + fatSectors * SECTOR);
    root.copy(disk, rootAt);
    return disk;
}
export async function writeDemoModel(path, sizeBytes = 64 << 20) {
    const files = [
        { name: 'README.TXT', data: Buffer.from('This disk is protected by Snapback.\r\nWrite anything: the next power cycle brings this file back as it is.\r\n') },
        { name: 'HELLO.TXT', data: Buffer.from('Hello from the model image.\r\n') },
        { name: 'DATA.BIN', data: Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff)) },
    ];
    await writeFile(path, buildFat16Disk(sizeBytes, files));
}
//# sourceMappingURL=demo-disk.js.map