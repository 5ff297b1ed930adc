/**
 * A manifest's region digests read from the manifest file when they are asked for, instead of
 * held in memory. A 1 TiB model with 1 MiB regions has 1 M SHA-256 digests: 32 MB that a daemon
 * would keep for its whole life while it needs each digest once, when that region is first
 * verified (and a region's read and hash cost a thousand times the small read of its digest).
 *
 * The digests are the base64 text of the manifest's "hashes" value: every 3 bytes of digests are
 * 4 characters, so the digest of any region is a short read at a computed offset. The file stays
 * open, so what is read is the file whose id was checked when the manifest was loaded, even if
 * its path is replaced later (manifests are replaced by rename, never rewritten in place).
 */
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { SnapbackError } from '../errors.js';

export class ManifestDigestFile {
  private closed = false;

  /**
   * `fh` the open manifest; `textStart` the file offset of the digests' first base64 character;
   * `byteLength` the digests' decoded length.
   */
  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    private readonly textStart: number,
    readonly byteLength: number,
  ) {}

  /** The length of the digests' base64 text (with its padding). */
  get textLength(): number {
    return Math.ceil(this.byteLength / 3) * 4;
  }

  /** Decoded digest bytes [offset, offset + length). */
  async read(offset: number, length: number): Promise<Buffer> {
    const span = this.span(offset, length);
    return this.decode(await this.readText(span.pos, span.length), offset - span.firstByte, length);
  }

  /**
   * The same, read synchronously (for callers that compare whole manifests, such as planning a
   * model switch; verification uses read()).
   */
  readSync(offset: number, length: number): Buffer {
    const span = this.span(offset, length);
    return this.decode(this.readTextSync(span.pos, span.length), offset - span.firstByte, length);
  }

  /** `length` characters of the digests' base64 text from `pos` (within textLength). */
  async readText(pos: number, length: number): Promise<string> {
    this.checkOpen();
    const buf = Buffer.allocUnsafe(length);
    for (let got = 0; got < length; ) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, this.textStart + pos + got);
      got += this.counted(bytesRead);
    }
    return buf.toString('latin1');
  }

  private readTextSync(pos: number, length: number): string {
    this.checkOpen();
    const buf = Buffer.allocUnsafe(length);
    for (let got = 0; got < length; ) got += this.counted(readSync(this.fh.fd, buf, got, length - got, this.textStart + pos + got));
    return buf.toString('latin1');
  }

  /** The whole base64 groups that hold bytes [offset, offset + length). */
  private span(offset: number, length: number): { firstByte: number; pos: number; length: number } {
    if (offset < 0 || length < 0 || offset + length > this.byteLength) {
      throw new SnapbackError('BAD_ARGUMENT', `digest bytes ${offset}+${length} are outside the manifest's ${this.byteLength}`);
    }
    const firstGroup = Math.floor(offset / 3);
    const endGroup = Math.ceil((offset + length) / 3);
    return { firstByte: firstGroup * 3, pos: firstGroup * 4, length: (endGroup - firstGroup) * 4 };
  }

  private decode(text: string, at: number, length: number): Buffer {
    const decoded = Buffer.from(text, 'base64');
    if (decoded.length < at + length) {
      throw new SnapbackError('MANIFEST_INVALID', `manifest ${this.path} changed on disk since it was loaded (its digests no longer decode)`);
    }
    return decoded.subarray(at, at + length);
  }

  private checkOpen(): void {
    if (this.closed) throw new SnapbackError('CLOSED', `manifest ${this.path} is closed`);
  }

  private counted(bytesRead: number): number {
    if (bytesRead === 0) throw new SnapbackError('MANIFEST_INVALID', `manifest ${this.path} changed on disk since it was loaded (it is shorter now)`);
    return bytesRead;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
