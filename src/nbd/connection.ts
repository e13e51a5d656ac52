import type { EventLog } from '../core/events.js';
import type { Socket } from 'node:net';
import { Budget } from './budget.js';
import { ByteQueue } from '../core/byte-queue.js';
import { byteLength, type Bytes } from '../core/bytes.js';
import type { NbdBackend, NbdExport } from './export.js';
import {
  BASE_ALLOCATION, CFLAG, CMD_NAMES, Cmd, Errno, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, Info,
  OPTION_HEADER_SIZE, Opt, OptionDataError, REPLY_FLAG_DONE, REQUEST_HEADER_SIZE, REQUEST_MAGIC, Rep, TFLAG,
  decodeExportName, decodeInfoRequest, decodeMetaContextRequest, decodeOptionHeader, decodeRequest,
  encodeBlockStatusChunk, encodeErrorChunk, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize,
  encodeInfoExport, encodeInfoString, encodeMetaContext, encodeOffsetDataHeader, encodeOptionError,
  encodeOptionReply, encodeServerEntry, encodeSimpleReply, type Request,
} from './protocol.js';

/** How long a client may keep its side open after ours ended, before the connection is closed. */
const PEER_CLOSE_GRACE_MS = 1000;

/** Option data longer than this ends the session (names are at most 4 KiB; nothing legitimate comes close). */
const MAX_OPTION_DATA = 64 * 1024;
/** Options before transmission; a client looping forever in the handshake is cut off. */
const MAX_OPTIONS = 1024;
/** One connection holds at most this many payload and reply bytes before it stops reading. */
const CONNECTION_LIMIT = 64 * 1024 * 1024;
/** Replies queued on the socket beyond this stop reading too (a client that does not read its replies). */
const SOCKET_QUEUE_LIMIT = 16 * 1024 * 1024;
const META_CONTEXT_ID = 1;
/** Command flags each command may carry (clients are known to set FUA on anything; it is ignored where it means nothing). */
const ALLOWED_FLAGS: Readonly<Record<number, number>> = {
  [Cmd.READ]: CFLAG.DF | CFLAG.FUA,
  [Cmd.WRITE]: CFLAG.FUA,
  [Cmd.FLUSH]: CFLAG.FUA,
  [Cmd.TRIM]: CFLAG.FUA,
  [Cmd.CACHE]: CFLAG.FUA,
  [Cmd.WRITE_ZEROES]: CFLAG.FUA | CFLAG.NO_HOLE | CFLAG.FAST_ZERO,
  [Cmd.BLOCK_STATUS]: CFLAG.REQ_ONE | CFLAG.FUA,
};
const PREFERRED_BLOCK = 4096;

/** Told of every request served: its command name and the seconds from read to reply. */
export type RequestObserver = (op: string, seconds: number) => void;

export interface ConnectionStats {
  id: string;
  peer: string;
  export: string | null;
  connectedAt: string;
  requests: Record<string, number>;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
  inFlight: number;
}

/** The NBD server's events (client-error, client-closed, request-failed, …). */
export type Log = EventLog;

type Phase = 'client-flags' | 'option-header' | 'option-data' | 'request' | 'payload' | 'discard' | 'done';

/**
 * One client: the fixed-newstyle handshake, then requests served
 * concurrently, replies written whole as each finishes (possibly out of
 * order). Bytes are parsed as they arrive; reading stops while the budget
 * is spent. A protocol violation that cannot be answered (bad magic, bad
 * client flags, an oversized option) ends this connection only.
 */
export class NbdConnection {
  readonly stats: ConnectionStats;
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  readonly #backend: NbdBackend;
  readonly #budget: Budget;
  readonly #log: Log;
  readonly #observe: RequestObserver | undefined;
  readonly #queue = new ByteQueue();
  #phase: Phase = 'client-flags';
  #noZeroes = false;
  #structured = false;
  #metaFor: string | undefined; // export name base:allocation was selected for
  #options = 0;
  #option: { option: number; length: number } | undefined;
  #request: Request | undefined;
  #discardLeft = 0;
  #export: NbdExport | undefined;
  #blockStatus = false;
  #held = 0; // bytes this connection holds in the budget
  #inFlight = 0;
  #stopping = false;
  #waiting = false;
  #idle: (() => void) | undefined;
  #corked = false;

  constructor(socket: Socket, backend: NbdBackend, budget: Budget, log: Log, id: string, observe?: RequestObserver) {
    this.#observe = observe;
    this.#socket = socket;
    this.#backend = backend;
    this.#budget = budget;
    this.#log = log;
    this.stats = {
      id,
      peer: socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix',
      export: null,
      connectedAt: new Date().toISOString(),
      requests: {},
      bytesRead: 0,
      bytesWritten: 0,
      errors: 0,
      inFlight: 0,
    };
    socket.setNoDelay?.(true);
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.#phase = 'done';
      this.#budget.cancel(this.#wake);
      resolve();
    }));
    socket.on('data', (chunk: Buffer) => {
      this.#queue.push(chunk);
      this.#pump();
    });
    socket.on('end', () => {
      // The client sent all it will send: finish what is in flight, then close.
      if (this.#phase === 'request' || this.#phase === 'done') this.#finish();
      else this.#drop(this.#phase === 'client-flags' || this.#phase === 'option-header' ? undefined : `closed in the middle of ${this.#phase === 'payload' || this.#phase === 'discard' ? 'a write payload (not acknowledged, not written)' : 'an option'}`);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') this.#log({ event: 'client-error', client: this.stats.id, error: e.message });
    });
    socket.on('drain', () => this.#pump());
    socket.write(encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
  }

  /** Closes the connection now, whatever is in flight (its replies are not sent). */
  abort(): void {
    this.#stopping = true;
    this.#phase = 'done';
    this.#socket.destroy();
  }

  /** Stops reading, lets requests in flight finish and their replies go out, then closes. */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    if (this.#phase !== 'request' && this.#phase !== 'payload' && this.#phase !== 'discard') this.#socket.destroy();
    else this.#finish();
    await this.closed;
  }

  // ---- parsing ---------------------------------------------------------------

  #wake = (): void => {
    this.#waiting = false;
    this.#socket.resume();
    this.#pump();
  };

  #pump(): void {
    while (this.#phase !== 'done' && !this.#stopping) {
      if (this.#phase === 'request' || this.#phase === 'payload') {
        if (this.#budget.over || this.#held >= CONNECTION_LIMIT || this.#socket.writableLength >= SOCKET_QUEUE_LIMIT) {
          this.#socket.pause();
          if (this.#budget.over && !this.#waiting) {
            this.#waiting = true;
            this.#budget.wait(this.#wake);
          }
          return;
        }
      }
      if (!this.#step()) break;
    }
    if (this.#phase !== 'done' && !this.#stopping && !this.#waiting && this.#socket.isPaused()) this.#socket.resume();
  }

  /** Parses one message if its bytes are there; false when more bytes are needed. */
  #step(): boolean {
    switch (this.#phase) {
      case 'client-flags': {
        const b = this.#queue.take(4);
        if (!b) return false;
        const flags = b.readUInt32BE(0);
        if ((flags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) !== 0) return this.#drop(`unknown client flags 0x${flags.toString(16)}`);
        if (!(flags & FLAG_FIXED_NEWSTYLE)) return this.#drop('the client does not speak fixed newstyle negotiation');
        this.#noZeroes = (flags & FLAG_NO_ZEROES) !== 0;
        this.#phase = 'option-header';
        return true;
      }
      case 'option-header': {
        const b = this.#queue.take(OPTION_HEADER_SIZE);
        if (!b) return false;
        const h = decodeOptionHeader(b);
        if (h.magic !== IHAVEOPT) return this.#drop(`bad option magic 0x${h.magic.toString(16)}`);
        if (h.length > MAX_OPTION_DATA) return this.#drop(`option ${h.option} carries ${h.length} bytes (at most ${MAX_OPTION_DATA})`);
        if (++this.#options > MAX_OPTIONS) return this.#drop(`more than ${MAX_OPTIONS} options without starting transmission`);
        this.#option = { option: h.option, length: h.length };
        this.#phase = 'option-data';
        return true;
      }
      case 'option-data': {
        const o = this.#option as { option: number; length: number };
        const data = this.#queue.take(o.length);
        if (!data) return false;
        this.#phase = 'option-header';
        this.#handleOption(o.option, data);
        return true;
      }
      case 'request': {
        const b = this.#queue.take(REQUEST_HEADER_SIZE);
        if (!b) return false;
        const r = decodeRequest(b);
        if (r.magic !== REQUEST_MAGIC) return this.#drop(`bad request magic 0x${r.magic.toString(16)}`);
        if (r.type === Cmd.DISC) {
          this.#count('disc');
          this.#finish();
          return false;
        }
        if (r.type === Cmd.WRITE) {
          this.#request = r;
          if (r.length > this.#backend.maxBlock) {
            this.#discardLeft = r.length;
            this.#phase = 'discard';
          } else {
            this.#phase = 'payload';
          }
          return true;
        }
        this.#dispatch(r, undefined);
        return true;
      }
      case 'payload': {
        const r = this.#request as Request;
        // Left in the pieces it was read in: the journal and the PVOL write them as they are (one copy less).
        const data = this.#queue.takePieces(r.length);
        if (!data) return false;
        this.#phase = 'request';
        this.#dispatch(r, data);
        return true;
      }
      case 'discard': {
        this.#discardLeft -= this.#queue.skip(this.#discardLeft);
        if (this.#discardLeft > 0) return false;
        this.#phase = 'request';
        this.#dispatch(this.#request as Request, undefined);
        return true;
      }
      default:
        return false;
    }
  }

  /** Ends the connection without a reply: the only answer to bytes that cannot be parsed. Returns false. */
  #drop(reason: string | undefined): false {
    if (reason) this.#log({ event: 'client-closed', client: this.stats.id, reason });
    this.#phase = 'done';
    this.#socket.destroy();
    return false;
  }

  /** No more requests will be read: close once the ones in flight have replied. */
  #finish(): void {
    this.#phase = 'done';
    this.#socket.pause();
    // Our replies flushed and our side ended, a client that keeps its side open (libnbd waits
    // for more replies) does not hold the connection: it is closed after a short grace.
    const end = (): void => {
      this.#socket.end(() => {
        const t = setTimeout(() => this.#socket.destroy(), PEER_CLOSE_GRACE_MS);
        t.unref();
      });
    };
    if (this.#inFlight === 0) end();
    else this.#idle = end;
  }

  // ---- handshake ---------------------------------------------------------------

  #handleOption(option: number, data: Buffer): void {
    const reply = (type: number, d?: Buffer): void => {
      this.#socket.write(encodeOptionReply(option, type, d));
    };
    const error = (type: number, message: string): void => {
      this.#socket.write(encodeOptionError(option, type, message));
    };
    const findExport = (name: string): NbdExport | undefined => (name === '' ? this.#backend.exports[0] : this.#backend.exports.find((e) => e.name === name));
    const unknown = (name: string): void => error(Rep.ERR_UNKNOWN, `no export named "${name}"; exports: ${this.#backend.exports.map((e) => e.name).join(', ')}`);
    try {
      switch (option) {
        case Opt.EXPORT_NAME: {
          const name = decodeExportName(data);
          const exp = findExport(name);
          if (!exp) {
            this.#drop(`asked for unknown export "${name}" with EXPORT_NAME (which has no error reply)`);
            return;
          }
          this.#socket.write(encodeExportNameReply(BigInt(exp.size), this.#transmissionFlags(exp), this.#noZeroes));
          this.#startTransmission(exp);
          return;
        }
        case Opt.ABORT:
          reply(Rep.ACK);
          this.#phase = 'done';
          this.#socket.end();
          return;
        case Opt.LIST:
          if (data.length > 0) {
            error(Rep.ERR_INVALID, 'NBD_OPT_LIST carries no data');
            return;
          }
          for (const e of this.#backend.exports) reply(Rep.SERVER, encodeServerEntry(e.name, e.description));
          reply(Rep.ACK);
          return;
        case Opt.INFO:
        case Opt.GO: {
          const { name, requests } = decodeInfoRequest(data);
          const exp = findExport(name);
          if (!exp) {
            unknown(name);
            return;
          }
          reply(Rep.INFO, encodeInfoExport(BigInt(exp.size), this.#transmissionFlags(exp)));
          reply(Rep.INFO, encodeInfoBlockSize(1, PREFERRED_BLOCK, this.#backend.maxBlock));
          if (requests.includes(Info.NAME)) reply(Rep.INFO, encodeInfoString(Info.NAME, exp.name));
          if (requests.includes(Info.DESCRIPTION)) reply(Rep.INFO, encodeInfoString(Info.DESCRIPTION, exp.description));
          reply(Rep.ACK);
          if (option === Opt.GO) this.#startTransmission(exp);
          return;
        }
        case Opt.STRUCTURED_REPLY:
          if (data.length > 0) {
            error(Rep.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY carries no data');
            return;
          }
          this.#structured = true;
          reply(Rep.ACK);
          return;
        case Opt.LIST_META_CONTEXT:
        case Opt.SET_META_CONTEXT: {
          const set = option === Opt.SET_META_CONTEXT;
          if (set && !this.#structured) {
            error(Rep.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY before NBD_OPT_SET_META_CONTEXT');
            return;
          }
          const { name, queries } = decodeMetaContextRequest(data);
          if (!findExport(name)) {
            unknown(name);
            return;
          }
          const matches = (set ? queries.length > 0 : true) && (queries.length === 0 || queries.some((q) => q === BASE_ALLOCATION || (!set && q === 'base:')));
          if (set) this.#metaFor = matches ? name : undefined;
          if (matches) reply(Rep.META_CONTEXT, encodeMetaContext(set ? META_CONTEXT_ID : 0, BASE_ALLOCATION));
          reply(Rep.ACK);
          return;
        }
        default:
          error(Rep.ERR_UNSUP, `option ${option} is not supported by jship`);
      }
    } catch (e) {
      if (!(e instanceof OptionDataError)) throw e;
      error(Rep.ERR_INVALID, e.message);
    }
  }

  #transmissionFlags(exp: NbdExport): number {
    return TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES
      | TFLAG.SEND_CACHE | TFLAG.SEND_FAST_ZERO | TFLAG.CAN_MULTI_CONN | (this.#structured ? TFLAG.SEND_DF : 0)
      | (exp.readOnly ? TFLAG.READ_ONLY : 0);
  }

  #startTransmission(exp: NbdExport): void {
    this.#export = exp;
    this.#blockStatus = this.#structured && this.#metaFor !== undefined && (this.#metaFor === exp.name || (this.#metaFor === '' && exp === this.#backend.exports[0]));
    this.stats.export = exp.name;
    this.#phase = 'request';
  }

  // ---- transmission ------------------------------------------------------------

  #count(op: string): void {
    this.stats.requests[op] = (this.stats.requests[op] ?? 0) + 1;
  }

  #dispatch(r: Request, payload: Bytes | undefined): void {
    const held = payload ? byteLength(payload) : (r.type === Cmd.READ && r.length <= this.#backend.maxBlock ? r.length : 0);
    this.#hold(held);
    this.#inFlight++;
    this.stats.inFlight = this.#inFlight;
    const op = CMD_NAMES[r.type] ?? 'unknown';
    this.#count(op);
    const t0 = process.hrtime.bigint();
    void this.#serve(r, payload).finally(() => {
      this.#observe?.(op, Number(process.hrtime.bigint() - t0) / 1e9);
      this.#release(held);
      this.#inFlight--;
      this.stats.inFlight = this.#inFlight;
      if (this.#inFlight === 0 && this.#idle) {
        const idle = this.#idle;
        this.#idle = undefined;
        idle();
      }
      this.#pump();
    });
  }

  #hold(n: number): void {
    this.#held += n;
    this.#budget.take(n);
  }

  #release(n: number): void {
    this.#held -= n;
    this.#budget.give(n);
  }

  async #serve(r: Request, payload: Bytes | undefined): Promise<void> {
    const exp = this.#export as NbdExport;
    const bad = this.#check(r, exp);
    if (bad) {
      this.#replyError(r, bad.errno, bad.message);
      return;
    }
    const offset = Number(r.offset);
    const fua = (r.flags & CFLAG.FUA) !== 0;
    try {
      switch (r.type) {
        case Cmd.READ: {
          const data = await exp.read(offset, r.length);
          this.stats.bytesRead += data.length;
          if (this.#structured) this.#send(encodeOffsetDataHeader(r.handle, REPLY_FLAG_DONE, r.offset, data.length), data);
          else this.#send(encodeSimpleReply(r.handle, 0), data);
          return;
        }
        case Cmd.WRITE:
          await exp.write(offset, payload as Bytes, fua);
          this.stats.bytesWritten += r.length;
          break;
        case Cmd.WRITE_ZEROES:
          await exp.writeZeroes(offset, r.length, fua);
          break;
        case Cmd.TRIM:
          await exp.trim(offset, r.length, fua);
          break;
        case Cmd.FLUSH:
          await this.#backend.flush();
          break;
        case Cmd.CACHE:
          await exp.cache(offset, r.length);
          break;
        case Cmd.BLOCK_STATUS: {
          let extents = await exp.blockStatus(offset, r.length);
          if (r.flags & CFLAG.REQ_ONE) extents = extents.slice(0, 1);
          this.#send(encodeBlockStatusChunk(r.handle, REPLY_FLAG_DONE, META_CONTEXT_ID, extents));
          return;
        }
        default:
          break;
      }
      this.#send(encodeSimpleReply(r.handle, 0));
    } catch (e) {
      const { errno, message } = this.#backend.errno(e);
      // Failures of ours (not the client's): the operator needs to see them, not only the client.
      if (errno === Errno.EIO) this.#log({ event: 'request-failed', client: this.stats.id, op: CMD_NAMES[r.type] ?? 'unknown', bytes: r.length, offset: r.offset.toString(), error: message });
      this.#replyError(r, errno, message);
    }
  }

  /** Why a request cannot be served, as the spec's errno; undefined when it can. */
  #check(r: Request, exp: NbdExport): { errno: number; message: string } | undefined {
    const name = CMD_NAMES[r.type];
    if (name === undefined) return { errno: Errno.EINVAL, message: `unknown command ${r.type}` };
    const allowed = ALLOWED_FLAGS[r.type] ?? 0;
    if ((r.flags & ~allowed) !== 0) return { errno: Errno.EINVAL, message: `flags 0x${r.flags.toString(16)} are not valid on ${name}` };
    if ((r.flags & CFLAG.DF) && !this.#structured) return { errno: Errno.EINVAL, message: 'DF needs structured replies' };
    if (r.type === Cmd.FLUSH) {
      return r.offset === 0n && r.length === 0 ? undefined : { errno: Errno.EINVAL, message: 'flush takes no offset or length' };
    }
    if (r.type === Cmd.BLOCK_STATUS && !this.#blockStatus) return { errno: Errno.EINVAL, message: `block status needs the ${BASE_ALLOCATION} meta context (NBD_OPT_SET_META_CONTEXT)` };
    if (r.length === 0) return { errno: Errno.EINVAL, message: `${name} of 0 bytes` };
    if ((r.type === Cmd.READ || r.type === Cmd.WRITE) && r.length > this.#backend.maxBlock) {
      return { errno: Errno.EINVAL, message: `${name} of ${r.length} bytes is larger than the maximum block size ${this.#backend.maxBlock}` };
    }
    const writes = r.type === Cmd.WRITE || r.type === Cmd.WRITE_ZEROES;
    if ((writes || r.type === Cmd.TRIM) && exp.readOnly) return { errno: Errno.EPERM, message: `"${exp.name}" is read-only` };
    if (r.offset + BigInt(r.length) > BigInt(exp.size)) {
      return { errno: writes ? Errno.ENOSPC : Errno.EINVAL, message: `${name} of ${r.length} bytes at ${r.offset} goes past the end of "${exp.name}" (${exp.size} bytes)` };
    }
    return undefined;
  }

  #replyError(r: Request, errno: number, message: string): void {
    this.stats.errors++;
    if (this.#structured) this.#send(encodeErrorChunk(r.handle, errno, message));
    else this.#send(encodeSimpleReply(r.handle, errno));
  }

  /**
   * Writes one reply whole: its pieces leave together, never interleaved with
   * another reply. Replies finished in the same turn of the event loop (a
   * group commit completes many writes at once) leave in one writev.
   */
  #send(...pieces: Buffer[]): void {
    if (this.#socket.destroyed) return;
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      setImmediate(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    for (const p of pieces) this.#socket.write(p);
  }
}
