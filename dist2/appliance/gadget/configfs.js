/**
 * The file operations the gadget builder performs on configfs, behind an interface: the real
 * one is plain node:fs on /sys/kernel/config; unit tests use SimulatedConfigfs, which gives a
 * temporary directory configfs's behaviour (attribute files that appear with a directory,
 * rmdir of a directory that still holds attributes, EBUSY for a linked function, …).
 *
 * Attribute values are written the way `echo` writes them (with a trailing newline, which
 * every attribute we use strips) so that an empty value still reaches the kernel as a write.
 */
import * as fs from 'node:fs/promises';
function code(err) {
    return err?.code;
}
export const realGadgetFs = {
    async exists(p) {
        try {
            await fs.lstat(p);
            return true;
        }
        catch {
            return false;
        }
    },
    async mkdir(p) {
        try {
            await fs.mkdir(p);
        }
        catch (err) {
            if (code(err) !== 'EEXIST')
                throw err;
        }
    },
    async rmdir(p) {
        try {
            await fs.rmdir(p);
        }
        catch (err) {
            if (code(err) !== 'ENOENT')
                throw err;
        }
    },
    async readdir(p) {
        return fs.readdir(p);
    },
    async readAttr(p) {
        return (await fs.readFile(p, 'utf8')).replace(/\n$/, '');
    },
    async writeAttr(p, value) {
        // One write(2) of the whole value, no O_CREAT/O_TRUNC games beyond what sysfs accepts.
        const fh = await fs.open(p, 'w');
        try {
            await fh.write(`${value}\n`);
        }
        finally {
            await fh.close();
        }
    },
    async symlink(target, p) {
        await fs.symlink(target, p);
    },
    async unlink(p) {
        try {
            await fs.unlink(p);
        }
        catch (err) {
            if (code(err) !== 'ENOENT')
                throw err;
        }
    },
    async isSymlink(p) {
        try {
            return (await fs.lstat(p)).isSymbolicLink();
        }
        catch {
            return false;
        }
    },
};
//# sourceMappingURL=configfs.js.map