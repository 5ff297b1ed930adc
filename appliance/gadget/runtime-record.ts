/**
 * The gadget's crash-recovery record (RUNTIME_DIR/gadget-NAME.json): what this run has attached
 * (the UDC, the nbd device, the socket), so that a daemon restarted after a crash or a kill -9
 * can take down what the dead one left. Written atomically; a record that cannot be written or
 * read only makes that cleanup rely on what configfs and sysfs show.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { childLogger } from '../logger.js';

const log = childLogger('gadget');

export interface RuntimeRecord {
  gadget: string;
  udc: string;
  nbdDevice: string | null;
  socket: string;
  pid: number;
}

export class RuntimeRecordFile {
  readonly path: string;

  constructor(
    private readonly dir: string,
    gadgetName: string,
  ) {
    this.path = path.join(dir, `gadget-${gadgetName}.json`);
  }

  async write(rec: RuntimeRecord): Promise<void> {
    try {
      await fs.mkdir(this.dir, { recursive: true });
      const tmp = `${this.path}.tmp`;
      await fs.writeFile(tmp, JSON.stringify(rec) + '\n');
      await fs.rename(tmp, this.path);
    } catch (err) {
      log.warn({ err }, 'cannot write the gadget runtime record');
    }
  }

  async read(): Promise<RuntimeRecord | null> {
    try {
      return JSON.parse(await fs.readFile(this.path, 'utf8')) as RuntimeRecord;
    } catch {
      return null;
    }
  }

  async remove(): Promise<void> {
    await fs.rm(this.path, { force: true });
  }
}
