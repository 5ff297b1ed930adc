export async function compareDiskWithModel(disk, model, regionSize, onProgress) {
    const size = model.size;
    const count = Math.ceil(size / regionSize);
    const chunkRegions = Math.max(1, Math.floor((4 << 20) / regionSize));
    const a = Buffer.allocUnsafe(chunkRegions * regionSize);
    const b = Buffer.allocUnsafe(chunkRegions * regionSize);
    const differing = [];
    for (let r = 0; r < count; r += chunkRegions) {
        const off = r * regionSize;
        const len = Math.min(a.length, size - off);
        await Promise.all([disk.readInto(a.subarray(0, len), off), model.readInto(b.subarray(0, len), off)]);
        for (let i = 0; i < chunkRegions && r + i < count; i++) {
            const s = i * regionSize;
            const e = Math.min(len, s + regionSize);
            if (!a.subarray(s, e).equals(b.subarray(s, e)))
                differing.push(r + i);
        }
        onProgress?.(Math.min(count, r + chunkRegions), count);
    }
    return { regionCount: count, regionSize, differing };
}
export async function verifyAgainstLog(disk, model, log, onProgress) {
    const cmp = await compareDiskWithModel(disk, model, log.regionSize, onProgress);
    const unlogged = cmp.differing.filter((r) => !log.isDirty(r));
    return {
        regionCount: cmp.regionCount,
        regionSize: cmp.regionSize,
        differing: cmp.differing.length,
        pending: log.pendingCount,
        writtenThisSession: log.writtenCount,
        unlogged,
        differingOutsideSession: cmp.differing.filter((r) => !log.isWritten(r)).length,
        ok: unlogged.length === 0,
    };
}
//# sourceMappingURL=verify.js.map