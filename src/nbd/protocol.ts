/**
 * The Network Block Device protocol, fixed newstyle (NetworkBlockDevice/nbd
 * doc/proto.md): constants and a pure codec for every message the server
 * reads or writes. All fields are big-endian (network byte order). No I/O.
 */

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_NAMES: Readonly<Record<number, string>> = {
  0: 'read', 1: 'write', 2: 'disc', 3: 'flush', 4: 'trim', 5: 'cache', 6: 'write-zeroes', 7: 'block-status',
};

/** Command flags. */
export const CFLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Structured reply chunk types and flags. */
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;
export const REPLY_FLAG_DONE = 1;

/** `base:allocation` states. */
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;
export const BASE_ALLOCATION = 'base:allocation';

/** Error numbers on the wire (Linux values, as the spec fixes them). */
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export const REQUEST_HEADER_SIZE = 28;
export const OPTION_HEADER_SIZE = 16;
/** Longest string the spec allows (export names, queries). */
export const MAX_STRING = 4096;

// ---- handshake ----------------------------------------------------------------

/** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export function encodeGreeting(flags: number): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

export interface OptionHeader {
  magic: bigint;
  option: number;
  length: number;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

/** C: option header (the client side; used by tests and fixtures). */
export function encodeOptionHeader(option: number, length: number): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_SIZE);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(length, 12);
  return b;
}

/** S: a reply to an option other than EXPORT_NAME. */
export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** An error reply with a human-readable message (the spec allows a UTF-8 string as data). */
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, Buffer.from(message.slice(0, 1024), 'utf8'));
}

/** S: the answer to EXPORT_NAME: size, transmission flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(size: bigint, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(size, 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

export function encodeInfoExport(size: bigint, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Info.EXPORT, 0);
  b.writeBigUInt64BE(size, 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(Info.BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

export function encodeInfoString(type: typeof Info.NAME | typeof Info.DESCRIPTION, text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

/** The data of an NBD_REP_SERVER reply to LIST: 32-bit name length, name, description. */
export function encodeServerEntry(name: string, description = ''): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description, 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

export function encodeMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** Why an option's data could not be decoded; answered with ERR_INVALID. */
export class OptionDataError extends Error {}

/** A cursor over option data that refuses to read past the end. */
class OptionData {
  #pos = 0;
  constructor(private readonly b: Buffer) {}
  u16(): number {
    this.#need(2);
    const v = this.b.readUInt16BE(this.#pos);
    this.#pos += 2;
    return v;
  }

  u32(): number {
    this.#need(4);
    const v = this.b.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  string(what: string): string {
    const len = this.u32();
    if (len > MAX_STRING) throw new OptionDataError(`${what} is ${len} bytes long (at most ${MAX_STRING})`);
    this.#need(len);
    const s = this.b.subarray(this.#pos, this.#pos + len);
    this.#pos += len;
    if (s.includes(0)) throw new OptionDataError(`${what} contains a NUL byte`);
    return s.toString('utf8');
  }

  end(): void {
    if (this.#pos !== this.b.length) throw new OptionDataError(`${this.b.length - this.#pos} bytes left over after the option's fields`);
  }

  #need(n: number): void {
    if (this.#pos + n > this.b.length) throw new OptionDataError(`option data ends after ${this.b.length} bytes, in the middle of a field`);
  }
}

/** The data of INFO and GO: export name and the information requests. */
export function decodeInfoRequest(data: Buffer): { name: string; requests: number[] } {
  const d = new OptionData(data);
  const name = d.string('export name');
  const n = d.u16();
  const requests: number[] = [];
  for (let i = 0; i < n; i++) requests.push(d.u16());
  d.end();
  return { name, requests };
}

/** The data of LIST_META_CONTEXT and SET_META_CONTEXT. */
export function decodeMetaContextRequest(data: Buffer): { name: string; queries: string[] } {
  const d = new OptionData(data);
  const name = d.string('export name');
  const n = d.u32();
  const queries: string[] = [];
  for (let i = 0; i < n; i++) queries.push(d.string('meta context query'));
  d.end();
  return { name, queries };
}

/** Export names in EXPORT_NAME are the whole option data. */
export function decodeExportName(data: Buffer): string {
  if (data.length > MAX_STRING) throw new OptionDataError(`export name is ${data.length} bytes long (at most ${MAX_STRING})`);
  if (data.includes(0)) throw new OptionDataError('export name contains a NUL byte');
  return data.toString('utf8');
}

// ---- transmission -------------------------------------------------------------

export interface Request {
  magic: number;
  flags: number;
  type: number;
  handle: bigint;
  offset: bigint;
  length: number;
}

export function decodeRequest(b: Buffer): Request {
  return {
    magic: b.readUInt32BE(0),
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: b.readBigUInt64BE(8),
    offset: b.readBigUInt64BE(16),
    length: b.readUInt32BE(24),
  };
}

/** C: a request header (the client side; used by tests and fixtures). */
export function encodeRequest(r: Omit<Request, 'magic'> & { magic?: number }): Buffer {
  const b = Buffer.alloc(REQUEST_HEADER_SIZE);
  b.writeUInt32BE(r.magic ?? REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(r.offset, 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

export function encodeSimpleReply(handle: bigint, error: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(handle, 8);
  return b;
}

/** The 20-byte header of a structured reply chunk; the payload follows. */
export function encodeChunkHeader(handle: bigint, flags: number, type: number, length: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/** Header and offset of an OFFSET_DATA chunk carrying `dataLength` bytes (data follows). */
export function encodeOffsetDataHeader(handle: bigint, flags: number, offset: bigint, dataLength: number): Buffer {
  const b = Buffer.alloc(28);
  encodeChunkHeader(handle, flags, ReplyType.OFFSET_DATA, 8 + dataLength).copy(b, 0);
  b.writeBigUInt64BE(offset, 20);
  return b;
}

export function encodeBlockStatusChunk(handle: bigint, flags: number, contextId: number, extents: ReadonlyArray<{ length: number; flags: number }>): Buffer {
  const b = Buffer.alloc(24 + 8 * extents.length);
  encodeChunkHeader(handle, flags, ReplyType.BLOCK_STATUS, 4 + 8 * extents.length).copy(b, 0);
  b.writeUInt32BE(contextId, 20);
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length, 24 + 8 * i);
    b.writeUInt32BE(e.flags, 28 + 8 * i);
  });
  return b;
}

export function encodeErrorChunk(handle: bigint, error: number, message: string): Buffer {
  const m = Buffer.from(message.slice(0, 512), 'utf8');
  const b = Buffer.alloc(26 + m.length);
  encodeChunkHeader(handle, REPLY_FLAG_DONE, ReplyType.ERROR, 6 + m.length).copy(b, 0);
  b.writeUInt32BE(error, 20);
  b.writeUInt16BE(m.length, 24);
  m.copy(b, 26);
  return b;
}
