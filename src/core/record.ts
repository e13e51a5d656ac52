import { crc32 } from './crc32.js';
import { crc32Bytes, type Bytes } from './bytes.js';
import { JshipError } from './errors.js';

/**
 * The journal record header: 64 bytes, little-endian, shared by the journal
 * volume, the tapes and the link. See docs/FORMAT.md, "Journal record".
 *
 * | off | size | field                                          |
 * |-----|------|------------------------------------------------|
 * |   0 |    2 | magic "JR" (0x4A 0x52)                          |
 * |   2 |    1 | version (1)                                    |
 * |   3 |    1 | type                                           |
 * |   4 |    2 | flags                                          |
 * |   6 |    2 | volume index (0xFFFF: the whole group)         |
 * |   8 |    8 | sequence number (base records: their position) |
 * |  16 |    8 | timestamp, ns since the epoch                  |
 * |  24 |    8 | volume offset, bytes                           |
 * |  32 |    8 | length, bytes                                  |
 * |  40 |    8 | data position (logical byte in the data area)  |
 * |  48 |    8 | aux (base records: base id; else 0)            |
 * |  56 |    4 | CRC-32 of the data (0 when there is none)      |
 * |  60 |    4 | CRC-32 of bytes 0..59                          |
 */
export const RECORD_SIZE = 64;
export const RECORD_MAGIC0 = 0x4a; // 'J'
export const RECORD_MAGIC1 = 0x52; // 'R'
export const RECORD_VERSION = 1;
/** The largest data a single record carries; larger writes are split. */
export const MAX_RECORD_DATA = 32 * 1024 * 1024;
/** Volume index of records that concern the whole group (markers). */
export const GROUP_VOLUME = 0xffff;

export enum RecordType {
  /** A write to a PVOL: carries the written bytes. */
  Update = 1,
  /** A range written with zeroes: no data. */
  Zero = 2,
  /** A range discarded: reads back as zeroes. No data. */
  Trim = 3,
  /** Control information (restore point, base started/complete, ...): carries a JSON payload. */
  Marker = 4,
  /** A chunk of a base (full copy); its sequence field holds its position. */
  Base = 5,
}

/** Flag of a Base record whose chunk is all zeroes: it carries no data. */
export const FLAG_BASE_ZERO = 0x0001;
const KNOWN_FLAGS: Record<RecordType, number> = {
  [RecordType.Update]: 0,
  [RecordType.Zero]: 0,
  [RecordType.Trim]: 0,
  [RecordType.Marker]: 0,
  [RecordType.Base]: FLAG_BASE_ZERO,
};

export interface RecordHeader {
  type: RecordType;
  flags: number;
  volume: number;
  /** Sequence number; for Base records the position (sequence of the last record before the chunk was read). */
  seq: bigint;
  /** Nanoseconds since the epoch. */
  timestamp: bigint;
  /** Byte offset in the volume (0 for markers). */
  offset: number;
  /** Bytes of the volume covered (for markers: payload bytes). */
  length: number;
  /** Logical position of the data in the data area (0 outside a journal volume). */
  dataPos: bigint;
  /** Base records: the base id (the sequence number of its "base started" marker). Else 0. */
  aux: bigint;
  /** CRC-32 of the data, 0 when there is none. */
  dataCrc: number;
}

/** Whether a record of this header carries `length` bytes of data after it. */
export function hasData(h: Pick<RecordHeader, 'type' | 'flags'>): boolean {
  switch (h.type) {
    case RecordType.Update:
    case RecordType.Marker:
      return true;
    case RecordType.Base:
      return (h.flags & FLAG_BASE_ZERO) === 0;
    default:
      return false;
  }
}

/** Number of data bytes that follow the header. */
export function dataLength(h: Pick<RecordHeader, 'type' | 'flags' | 'length'>): number {
  return hasData(h) ? h.length : 0;
}

/** The data CRC of a record whose data is `data` (in one piece or several; 0 for none). */
export function dataCrc(data: Bytes): number {
  return crc32Bytes(data);
}

const U64_MAX = (1n << 64n) - 1n;

/** Writes the 64-byte header of `h` at `buf[off..off+64)` and returns `buf`. */
export function encodeRecord(h: RecordHeader, buf: Buffer = Buffer.allocUnsafe(RECORD_SIZE), off = 0): Buffer {
  checkHeader(h, (field, why) => new JshipError('RECORD_BAD_FIELD', `cannot encode record: ${field} ${why}`));
  buf[off] = RECORD_MAGIC0;
  buf[off + 1] = RECORD_MAGIC1;
  buf[off + 2] = RECORD_VERSION;
  buf[off + 3] = h.type;
  buf.writeUInt16LE(h.flags, off + 4);
  buf.writeUInt16LE(h.volume, off + 6);
  buf.writeBigUInt64LE(h.seq, off + 8);
  buf.writeBigUInt64LE(h.timestamp, off + 16);
  buf.writeBigUInt64LE(BigInt(h.offset), off + 24);
  buf.writeBigUInt64LE(BigInt(h.length), off + 32);
  buf.writeBigUInt64LE(h.dataPos, off + 40);
  buf.writeBigUInt64LE(h.aux, off + 48);
  buf.writeUInt32LE(h.dataCrc >>> 0, off + 56);
  buf.writeUInt32LE(crc32(buf.subarray(off, off + 60)), off + 60);
  return buf;
}

/**
 * Decodes the 64-byte header at `buf[off..]`. Every failure is a JshipError
 * with a RECORD_* code: truncated, bad magic, version, type, CRC or field.
 * `where` names the place for the message (a file and a slot, say).
 */
export function decodeRecord(buf: Uint8Array, off = 0, where = 'record'): RecordHeader {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length - off < RECORD_SIZE) {
    throw new JshipError('RECORD_TRUNCATED', `${where}: ${b.length - off} of ${RECORD_SIZE} header bytes present`, {
      hint: 'the record was cut short; the data after the last whole record is lost',
    });
  }
  if (b[off] !== RECORD_MAGIC0 || b[off + 1] !== RECORD_MAGIC1) {
    throw new JshipError('RECORD_BAD_MAGIC', `${where}: not a journal record (bad magic)`, {
      hint: 'the bytes here are not a jship record: wrong file, wrong offset, or overwritten',
    });
  }
  const stored = b.readUInt32LE(off + 60);
  if (crc32(b.subarray(off, off + 60)) !== stored) {
    throw new JshipError('RECORD_BAD_CRC', `${where}: header checksum mismatch`, {
      hint: 'the record header is damaged; records from here on cannot be trusted',
    });
  }
  const version = b[off + 2];
  if (version !== RECORD_VERSION) {
    throw new JshipError('RECORD_BAD_VERSION', `${where}: record version ${version} is not supported (this jship reads ${RECORD_VERSION})`, {
      hint: 'use a jship release that reads this version',
    });
  }
  const type = b[off + 3] as number;
  if (!(type in KNOWN_FLAGS)) {
    throw new JshipError('RECORD_BAD_TYPE', `${where}: unknown record type ${type}`, {
      hint: 'written by a newer jship? use a release that knows this type',
    });
  }
  const h: RecordHeader = {
    type: type as RecordType,
    flags: b.readUInt16LE(off + 4),
    volume: b.readUInt16LE(off + 6),
    seq: b.readBigUInt64LE(off + 8),
    timestamp: b.readBigUInt64LE(off + 16),
    offset: toSafe(b.readBigUInt64LE(off + 24), where, 'offset'),
    length: toSafe(b.readBigUInt64LE(off + 32), where, 'length'),
    dataPos: b.readBigUInt64LE(off + 40),
    aux: b.readBigUInt64LE(off + 48),
    dataCrc: b.readUInt32LE(off + 56),
  };
  checkHeader(h, (field, why) => new JshipError('RECORD_BAD_FIELD', `${where}: ${field} ${why}`, {
    hint: 'the record is inconsistent although its checksum matches: written by a faulty implementation',
  }));
  return h;
}

function toSafe(v: bigint, where: string, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new JshipError('RECORD_BAD_FIELD', `${where}: ${field} ${v} is beyond 2^53`, {
      hint: 'volumes of jship are limited to 8 PiB',
    });
  }
  return Number(v);
}

function checkHeader(h: RecordHeader, fail: (field: string, why: string) => Error): void {
  const known = KNOWN_FLAGS[h.type];
  if (known === undefined) throw fail('type', `${String(h.type)} is unknown`);
  if ((h.flags & ~known) !== 0 || h.flags < 0 || h.flags > 0xffff) throw fail('flags', `0x${h.flags.toString(16)} has unknown bits for this type`);
  if (!Number.isInteger(h.volume) || h.volume < 0 || h.volume > 0xffff) throw fail('volume', `${h.volume} is out of range`);
  for (const [name, v] of [['seq', h.seq], ['timestamp', h.timestamp], ['dataPos', h.dataPos], ['aux', h.aux]] as const) {
    if (v < 0n || v > U64_MAX) throw fail(name, `${v} is out of range`);
  }
  if (!Number.isSafeInteger(h.offset) || h.offset < 0) throw fail('offset', `${h.offset} is out of range`);
  if (!Number.isSafeInteger(h.length) || h.length < 0) throw fail('length', `${h.length} is out of range`);
  if (!Number.isSafeInteger(h.offset + h.length)) throw fail('offset+length', 'is beyond 2^53');
  if (h.type === RecordType.Marker ? h.volume !== GROUP_VOLUME : h.volume === GROUP_VOLUME) {
    throw fail('volume', h.type === RecordType.Marker ? 'of a marker must be 0xFFFF' : '0xFFFF is only for markers');
  }
  if (hasData(h)) {
    if (h.length > MAX_RECORD_DATA) throw fail('length', `${h.length} exceeds the ${MAX_RECORD_DATA}-byte record limit`);
  } else if (h.dataCrc !== 0) {
    throw fail('dataCrc', 'must be 0 for a record without data');
  }
  if (h.type !== RecordType.Base && h.aux !== 0n) throw fail('aux', 'must be 0 for this type');
  if (h.type !== RecordType.Base && h.seq === 0n) throw fail('seq', 'must not be 0');
  if (h.type === RecordType.Update && h.length === 0) throw fail('length', 'of an update must not be 0');
}

/** Checks `data` against the header's data CRC; throws DATA_BAD_CRC naming the record. */
export function verifyData(h: RecordHeader, data: Uint8Array, where = 'record'): void {
  if (data.length !== dataLength(h)) {
    throw new JshipError('RECORD_TRUNCATED', `${where} (seq ${h.seq}): ${data.length} of ${dataLength(h)} data bytes present`, {
      hint: 'the record was cut short',
    });
  }
  if (dataCrc(data) !== h.dataCrc) {
    throw new JshipError('DATA_BAD_CRC', `${where} (seq ${h.seq}): data checksum mismatch`, {
      hint: 'the data of this record is damaged',
      details: { seq: h.seq },
    });
  }
}

export function recordTypeName(t: RecordType): string {
  return RecordType[t]?.toLowerCase() ?? `type-${String(t)}`;
}
