/**
 * Pipes for spliced reads (docs/native-io.md): a large READ's data goes from the file into
 * a pipe (page references, no copy) and from the pipe to the socket. Each pipe holds one
 * request of up to PIPE_BYTES. Empty pipes are kept for the next request; a pipe whose contents
 * were not all sent (an error, a dropped connection) is closed.
 *
 * The pool opens at most `max` pipes: a pipe of 1 MiB counts 256 pages against the user's
 * pipe-user-pages-soft limit (16384 pages by default) unless the daemon runs as root. When the
 * kernel refuses one, the pool keeps the pipes it has and asks for no more (logged once); reads
 * that find no free pipe take the buffered path.
 */
import type { Logger } from 'pino';
import type { NativeIo } from '../native/native-io.js';

/** The largest READ a pipe carries (the kernel's default pipe-max-size). */
export const PIPE_BYTES = 1024 * 1024;

export interface Pipe {
  readonly readFd: number;
  readonly writeFd: number;
}

export class PipePool {
  private readonly free: Pipe[] = [];
  /** Pipes open: free ones and those in use. */
  private open = 0;
  /** The kernel refused a pipe once (logged then). */
  private refused = false;
  private closed = false;

  constructor(
    readonly io: NativeIo,
    private max: number,
    private readonly log: Logger,
  ) {}

  /**
   * Whether a READ at `offset` of `length` bytes fits in a pipe: one slot per page it touches,
   * so a 1 MiB read that does not start on a page boundary does not (it is read the usual way).
   */
  fits(offset: number, length: number): boolean {
    return length > 0 && (offset % this.io.pageSize) + length <= PIPE_BYTES;
  }

  /** An empty pipe, or null when `max` are in use or the kernel refused one. */
  acquire(): Pipe | null {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.open >= this.max || this.closed) return null;
    try {
      const [readFd, writeFd] = this.io.openPipe(PIPE_BYTES);
      this.open++;
      return { readFd, writeFd };
    } catch (err) {
      // The kernel's limit is reached: keep the pipes there are, ask for no more.
      this.max = this.open;
      if (!this.refused) this.log.warn({ err, pipes: this.open }, `no more pipes of ${PIPE_BYTES} bytes (${(err as Error).message}): at most ${this.open} large reads at a time are spliced, the others are copied through buffers`);
      this.refused = true;
      return null;
    }
  }

  /** Gives back a pipe that is empty again (everything put in it was sent). */
  release(pipe: Pipe): void {
    if (this.closed) this.discard(pipe);
    else this.free.push(pipe);
  }

  /** Closes a pipe that may hold data. */
  discard(pipe: Pipe): void {
    this.open--;
    this.io.closeFd(pipe.readFd);
    this.io.closeFd(pipe.writeFd);
  }

  /** Closes the free pipes; pipes in use are closed as they come back. */
  close(): void {
    this.closed = true;
    for (const pipe of this.free.splice(0)) this.discard(pipe);
  }
}
