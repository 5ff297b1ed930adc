/**
 * The fixed-newstyle handshake, server side: the greeting, the client flags and option
 * haggling up to the transmission phase (NBD_OPT_GO or NBD_OPT_EXPORT_NAME). It parses from a
 * ByteQueue and writes replies through `send`; it never touches the device's data.
 */
import type { ByteQueue } from './byte-queue.js';
import { describeExport, transmissionFlags, type ExportInfo, type ExportSettings } from './export-info.js';
import {
  CLIENT_FLAGS_SIZE,
  EXPORT_NAME_PADDING,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  GREETING_SIZE,
  IHAVEOPT_HI,
  IHAVEOPT_LO,
  INFO_BLOCK_SIZE,
  INFO_DESCRIPTION,
  INFO_EXPORT,
  INFO_NAME,
  KNOWN_CLIENT_FLAGS,
  NBD_MAGIC_HI,
  NBD_MAGIC_LO,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_MAGIC_HI,
  OPTION_REPLY_MAGIC_LO,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_STARTTLS,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_ERR_INVALID,
  REP_ERR_SHUTDOWN,
  REP_ERR_TLS_REQD,
  REP_ERR_TOO_BIG,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_SERVER,
} from './protocol.js';

export interface NegotiationLimits {
  /** Option data longer than this is skipped and refused with NBD_REP_ERR_TOO_BIG. */
  maxOptionLength: number;
  /** Option data longer than this ends the connection (not worth reading). */
  maxSkippedOptionLength: number;
  /** Options allowed on one connection before it is dropped. */
  maxOptions: number;
  /**
   * 'required': only NBD_OPT_STARTTLS (and ABORT) are served until TLS is up; every other
   * option gets NBD_REP_ERR_TLS_REQD. 'off': STARTTLS is not supported.
   */
  tls: 'off' | 'required';
}

/**
 * What `process` found: more bytes needed, transmission reached, the connection must end, or
 * STARTTLS was acknowledged (the caller starts TLS on the socket, then calls `tlsStarted`).
 */
export type NegotiationStep = 'pending' | 'transmission' | 'close' | 'starttls';

type State = 'flags' | 'header' | 'data' | 'skip';

export function greeting(): Buffer {
  const b = Buffer.allocUnsafe(GREETING_SIZE);
  b.writeUInt32BE(NBD_MAGIC_HI, 0);
  b.writeUInt32BE(NBD_MAGIC_LO, 4);
  b.writeUInt32BE(IHAVEOPT_HI, 8);
  b.writeUInt32BE(IHAVEOPT_LO, 12);
  b.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  return b;
}

export class OptionNegotiator {
  /** Set once NBD_OPT_STRUCTURED_REPLY was acknowledged. */
  structured = false;
  /** The export chosen, once `process` returned 'transmission'. */
  info: ExportInfo | null = null;
  /** Why `process` returned 'close'. */
  closeReason = '';
  private noZeroes = false;
  private state: State = 'flags';
  private option = 0;
  private optionLength = 0;
  private skipLeft = 0;
  private optionCount = 0;
  private tlsActive = false;

  constructor(
    private readonly settings: ExportSettings,
    private readonly limits: NegotiationLimits,
    private readonly send: (data: Buffer) => void,
  ) {}

  process(q: ByteQueue): NegotiationStep {
    for (;;) {
      switch (this.state) {
        case 'flags': {
          if (q.length < CLIENT_FLAGS_SIZE) return 'pending';
          const b = q.contiguous(CLIENT_FLAGS_SIZE);
          const flags = b.readUInt32BE(q.offset);
          q.consume(CLIENT_FLAGS_SIZE);
          if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) return this.close(`unknown client flags 0x${flags.toString(16)}`);
          this.noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
          this.state = 'header';
          break;
        }
        case 'header': {
          if (q.length < OPTION_HEADER_SIZE) return 'pending';
          const b = q.contiguous(OPTION_HEADER_SIZE);
          const o = q.offset;
          const magicOk = b.readUInt32BE(o) === IHAVEOPT_HI && b.readUInt32BE(o + 4) === IHAVEOPT_LO;
          this.option = b.readUInt32BE(o + 8);
          this.optionLength = b.readUInt32BE(o + 12);
          q.consume(OPTION_HEADER_SIZE);
          if (!magicOk) return this.close('bad option magic');
          if (++this.optionCount > this.limits.maxOptions) return this.close('too many options');
          if (this.optionLength > this.limits.maxSkippedOptionLength) return this.close(`option data of ${this.optionLength} bytes`);
          if (this.optionLength > this.limits.maxOptionLength) {
            this.skipLeft = this.optionLength;
            this.state = 'skip';
          } else {
            this.state = 'data';
          }
          break;
        }
        case 'skip': {
          this.skipLeft -= q.skip(this.skipLeft);
          if (this.skipLeft > 0) return 'pending';
          this.refuse(this.option, REP_ERR_TOO_BIG, 'option data too long');
          this.state = 'header';
          break;
        }
        case 'data': {
          if (q.length < this.optionLength) return 'pending';
          const data = q.take(this.optionLength);
          this.state = 'header';
          const step = this.handleOption(this.option, data);
          if (step !== 'pending') return step;
          break;
        }
      }
    }
  }

  /** TLS is up on the connection: options are served from now on. */
  tlsStarted(): void {
    this.tlsActive = true;
  }

  /** Handles one complete option; 'pending' means: keep haggling. */
  private handleOption(option: number, data: Buffer): NegotiationStep {
    if (option === OPT_STARTTLS) return this.startTls(data);
    if (this.limits.tls === 'required' && !this.tlsActive) {
      // Nothing about the export is told, and nothing is served, before TLS.
      if (option === OPT_EXPORT_NAME) return this.close('NBD_OPT_EXPORT_NAME before STARTTLS on a TLS-only listener');
      if (option !== OPT_ABORT) return this.refuse(option, REP_ERR_TLS_REQD, 'this server requires TLS: use NBD_OPT_STARTTLS');
    }
    switch (option) {
      case OPT_EXPORT_NAME:
        return this.exportName(data);
      case OPT_ABORT:
        this.reply(option, REP_ACK);
        return this.close('client aborted the handshake');
      case OPT_LIST:
        if (data.length !== 0) return this.refuse(option, REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        this.reply(option, REP_SERVER, this.serverEntry());
        this.reply(option, REP_ACK);
        return 'pending';
      case OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.refuse(option, REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        this.reply(option, REP_ACK);
        return 'pending';
      case OPT_INFO:
      case OPT_GO:
        return this.infoOrGo(option, data);
      default:
        return this.refuse(option, REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private startTls(data: Buffer): NegotiationStep {
    if (this.limits.tls === 'off') return this.refuse(OPT_STARTTLS, REP_ERR_UNSUP, 'TLS is not configured on this listener');
    if (this.tlsActive) return this.refuse(OPT_STARTTLS, REP_ERR_INVALID, 'TLS is already active');
    if (data.length !== 0) return this.refuse(OPT_STARTTLS, REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
    // Anything agreed in plain text does not carry over into the TLS session.
    this.structured = false;
    this.reply(OPT_STARTTLS, REP_ACK);
    return 'starttls';
  }

  private exportName(data: Buffer): NegotiationStep {
    const name = data.toString('utf8');
    if (!this.isOurExport(name)) return this.close(`unknown export "${name.slice(0, 64)}"`);
    const info = this.describe();
    if (!info) return this.close('the export is not available');
    const b = Buffer.alloc(10 + (this.noZeroes ? 0 : EXPORT_NAME_PADDING));
    writeU64(b, info.size, 0);
    b.writeUInt16BE(transmissionFlags(info, this.structured), 8);
    this.send(b);
    this.info = info;
    return 'transmission';
  }

  private infoOrGo(option: number, data: Buffer): NegotiationStep {
    if (data.length < 6) return this.refuse(option, REP_ERR_INVALID, 'option data too short');
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) return this.refuse(option, REP_ERR_INVALID, 'export name overruns the option');
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (6 + nameLength + 2 * count !== data.length) return this.refuse(option, REP_ERR_INVALID, 'information request list does not match the option length');
    const requested = new Set<number>();
    for (let i = 0; i < count; i++) requested.add(data.readUInt16BE(6 + nameLength + 2 * i));
    if (!this.isOurExport(name)) return this.refuse(option, REP_ERR_UNKNOWN, `no export named "${name.slice(0, 64)}"`);
    const info = this.describe();
    if (!info) return this.refuse(option, REP_ERR_SHUTDOWN, 'the export is not available');

    const exp = Buffer.allocUnsafe(12);
    exp.writeUInt16BE(INFO_EXPORT, 0);
    writeU64(exp, info.size, 2);
    exp.writeUInt16BE(transmissionFlags(info, this.structured), 10);
    this.reply(option, REP_INFO, exp);
    if (requested.has(INFO_NAME)) this.reply(option, REP_INFO, infoString(INFO_NAME, info.name));
    if (requested.has(INFO_DESCRIPTION) && info.description !== undefined) {
      this.reply(option, REP_INFO, infoString(INFO_DESCRIPTION, info.description));
    }
    const bs = Buffer.allocUnsafe(14);
    bs.writeUInt16BE(INFO_BLOCK_SIZE, 0);
    bs.writeUInt32BE(info.minBlockSize, 2);
    bs.writeUInt32BE(info.preferredBlockSize, 6);
    bs.writeUInt32BE(info.maxBlockSize, 10);
    this.reply(option, REP_INFO, bs);
    this.reply(option, REP_ACK);
    if (option === OPT_INFO) return 'pending';
    this.info = info;
    return 'transmission';
  }

  /** The empty name is the default export, which is ours. */
  private isOurExport(name: string): boolean {
    return name === '' || name === this.settings.name;
  }

  private describe(): ExportInfo | null {
    try {
      return describeExport(this.settings);
    } catch {
      return null;
    }
  }

  private serverEntry(): Buffer {
    const name = Buffer.from(this.settings.name, 'utf8');
    const description = Buffer.from(this.settings.description ?? '', 'utf8');
    const b = Buffer.allocUnsafe(4 + name.length + description.length);
    b.writeUInt32BE(name.length, 0);
    name.copy(b, 4);
    description.copy(b, 4 + name.length);
    return b;
  }

  private refuse(option: number, type: number, message: string): NegotiationStep {
    this.reply(option, type, Buffer.from(message, 'utf8'));
    return 'pending';
  }

  private reply(option: number, type: number, payload?: Buffer): void {
    const length = payload?.length ?? 0;
    const b = Buffer.allocUnsafe(20 + length);
    b.writeUInt32BE(OPTION_REPLY_MAGIC_HI, 0);
    b.writeUInt32BE(OPTION_REPLY_MAGIC_LO, 4);
    b.writeUInt32BE(option, 8);
    b.writeUInt32BE(type, 12);
    b.writeUInt32BE(length, 16);
    payload?.copy(b, 20);
    this.send(b);
  }

  private close(reason: string): NegotiationStep {
    this.closeReason = reason;
    return 'close';
  }
}

function infoString(type: number, text: string): Buffer {
  const s = Buffer.from(text, 'utf8').subarray(0, 4096);
  const b = Buffer.allocUnsafe(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

function writeU64(b: Buffer, value: number, at: number): void {
  b.writeUInt32BE(Math.floor(value / 0x100000000), at);
  b.writeUInt32BE(value >>> 0, at + 4);
}
