import { crc32 } from '../core/crc32.js';
import { JshipError } from '../core/errors.js';
import { RECORD_SIZE, dataLength, decodeRecord, verifyData, type RecordHeader } from '../core/record.js';
import { bytesToUuid, uuidToBytes } from '../core/superblock.js';
import { decryptPayload, type TapeKey } from './crypto.js';
import { decompressFrame } from './zstd.js';

/**
 * A journal segment: one tar entry of a tape, a batch of records behind a
 * 96-byte header. See docs/FORMAT.md, "Segment".
 *
 * | off | size | field                                                   |
 * |-----|------|---------------------------------------------------------|
 * |   0 |    8 | magic "JSHIPSG1"                                        |
 * |   8 |    2 | version (2)                                             |
 * |  10 |    1 | kind: 1 update records, 2 base records                  |
 * |  11 |    1 | flags: bit 0 encrypted (AES-256-GCM), bit 1 compressed   |
 * |  12 |    4 | record count                                            |
 * |  16 |    8 | first sequence number (base: first position)            |
 * |  24 |    8 | last sequence number (base: last position)              |
 * |  32 |    8 | first timestamp (ns)                                    |
 * |  40 |    8 | last timestamp (ns)                                     |
 * |  48 |    8 | payload bytes that follow                               |
 * |  56 |    4 | number: the NNNNNNNN of its entry name (in the media set)|
 * |  60 |   16 | media set id (the label's mediaSet.id, a UUID)          |
 * |  76 |   16 | group id (the label's groupId)                          |
 * |  92 |    4 | CRC-32 of bytes 0..91                                   |
 *
 * Bytes 56..91 bind the segment to its tape: the media set id is random
 * per export, so a segment of another tape (of a cloned group, say) names
 * another set, and its number fixes its place among the set's segments.
 * Payload: the records (64-byte header + data each), or, when encrypted,
 * nonce (12) + ciphertext of the records + GCM tag (16), authenticated with
 * the whole header as associated data. Compressed (only with encrypted,
 * tape format 3): what is encrypted is one zstd frame of the records, so
 * that an encrypted tape compresses as a plain one does.
 */
export const SEGMENT_HEADER_SIZE = 96;
export const SEGMENT_VERSION = 2;
const MAGIC = Buffer.from('JSHIPSG1', 'latin1');
export const FLAG_ENCRYPTED = 0x01;
export const FLAG_COMPRESSED = 0x02;
/** The largest segment payload the format allows (a record may hold 32 MiB of data). */
export const MAX_SEGMENT_PAYLOAD = 48 * 1024 * 1024;

export enum SegmentKind {
  Update = 1,
  Base = 2,
}

export interface SegmentHeader {
  kind: SegmentKind;
  encrypted: boolean;
  /** The (encrypted) payload is a zstd frame of the records (tape format 3). */
  compressed: boolean;
  count: number;
  firstSeq: bigint;
  lastSeq: bigint;
  firstTs: bigint;
  lastTs: bigint;
  payloadBytes: number;
  /** Its number in the media set (the NNNNNNNN of segments/NNNNNNNN.jrs). */
  number: number;
  mediaSetId: string;
  groupId: string;
}

export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeUInt16LE(SEGMENT_VERSION, 8);
  b[10] = h.kind;
  b[11] = (h.encrypted ? FLAG_ENCRYPTED : 0) | (h.compressed ? FLAG_COMPRESSED : 0);
  b.writeUInt32LE(h.count, 12);
  b.writeBigUInt64LE(h.firstSeq, 16);
  b.writeBigUInt64LE(h.lastSeq, 24);
  b.writeBigUInt64LE(h.firstTs, 32);
  b.writeBigUInt64LE(h.lastTs, 40);
  b.writeBigUInt64LE(BigInt(h.payloadBytes), 48);
  b.writeUInt32LE(h.number, 56);
  uuidToBytes(h.mediaSetId).copy(b, 60);
  uuidToBytes(h.groupId).copy(b, 76);
  b.writeUInt32LE(crc32(b.subarray(0, 92)), 92);
  return b;
}

export function decodeSegmentHeader(b: Buffer, where: string): SegmentHeader {
  const bad = (why: string): never => {
    throw new JshipError('TAPE_DAMAGED', `${where}: ${why}`, { hint: 'the segment is damaged; records from here on cannot be read from this copy' });
  };
  if (b.length < SEGMENT_HEADER_SIZE) bad('segment shorter than its header');
  if (!b.subarray(0, 8).equals(MAGIC)) bad('not a journal segment (bad magic)');
  const version = b.readUInt16LE(8);
  if (version !== SEGMENT_VERSION) {
    throw new JshipError('TAPE_DAMAGED', `${where}: segment version ${version} is not supported (this jship reads version ${SEGMENT_VERSION})`, {
      hint: version < SEGMENT_VERSION ? 'the tape was written by an earlier jship, whose segments are not bound to their tape: export again with this release' : 'the tape was written by a newer jship: read it with that release',
    });
  }
  if (crc32(b.subarray(0, 92)) !== b.readUInt32LE(92)) bad('segment header checksum mismatch');
  const kind = b[10] as number;
  if (kind !== SegmentKind.Update && kind !== SegmentKind.Base) bad(`unknown segment kind ${kind}`);
  const flags = b[11] as number;
  if ((flags & ~(FLAG_ENCRYPTED | FLAG_COMPRESSED)) !== 0) bad(`unknown segment flags 0x${flags.toString(16)}`);
  if ((flags & FLAG_COMPRESSED) !== 0 && (flags & FLAG_ENCRYPTED) === 0) bad('a compressed payload outside encryption (the tape frame compresses a plain one)');
  const payload = b.readBigUInt64LE(48);
  if (payload !== BigInt(b.length - SEGMENT_HEADER_SIZE)) bad(`payload is ${b.length - SEGMENT_HEADER_SIZE} bytes, the header says ${payload}`);
  if (payload > BigInt(MAX_SEGMENT_PAYLOAD)) bad(`payload of ${payload} bytes exceeds the format's ${MAX_SEGMENT_PAYLOAD}-byte limit`);
  const count = b.readUInt32LE(12);
  if (count === 0) bad('segment holds no records');
  return {
    kind: kind as SegmentKind,
    encrypted: (flags & FLAG_ENCRYPTED) !== 0,
    compressed: (flags & FLAG_COMPRESSED) !== 0,
    count,
    firstSeq: b.readBigUInt64LE(16),
    lastSeq: b.readBigUInt64LE(24),
    firstTs: b.readBigUInt64LE(32),
    lastTs: b.readBigUInt64LE(40),
    payloadBytes: Number(payload),
    number: b.readUInt32LE(56),
    mediaSetId: bytesToUuid(b.subarray(60, 76)),
    groupId: bytesToUuid(b.subarray(76, 92)),
  };
}

/** What a reader that finds a segment by its catalogued place expects it to be. */
export interface ExpectedSegment {
  firstSeq: bigint;
  lastSeq: bigint;
  count: number;
  groupId: string;
  mediaSetId: string;
  /** Its tape is catalogued as plaintext: an encrypted segment there is not the one catalogued. */
  plaintext: boolean;
}

/** The hint of every stored segment that is not what its import found. */
export const STORED_TAPE_CHANGED = 'the stored tape changed since it was imported: import a good copy again';
/** The same, where the catalogue may be what changed. */
export const STORED_SEGMENT_DIFFERS = 'the stored tape changed since it was imported: rebuild the catalogue (jship catalog --rebuild) or import a good copy';

/**
 * The header of a segment read at its catalogued place, which must be the
 * segment the catalogue says is there (else TAPE_DAMAGED): the content of
 * its tar entry, header and payload.
 */
export function expectSegment(content: Buffer, want: ExpectedSegment, where: string): SegmentHeader {
  const sh = decodeSegmentHeader(content, where);
  if (sh.firstSeq !== want.firstSeq || sh.lastSeq !== want.lastSeq || sh.count !== want.count || sh.groupId !== want.groupId || sh.mediaSetId !== want.mediaSetId) {
    throw new JshipError('TAPE_DAMAGED', `${where}: the segment differs from the catalogue`, { hint: STORED_SEGMENT_DIFFERS });
  }
  if (sh.encrypted && want.plaintext) throw new JshipError('TAPE_DAMAGED', `${where}: an encrypted segment in a tape catalogued as plaintext`, { hint: STORED_SEGMENT_DIFFERS });
  return sh;
}

/**
 * `length` bytes of a segment's records from `from`, where the catalogue's
 * record index places a record's data: TAPE_DAMAGED when they run past the
 * records (a copy shorter than the one catalogued), never fewer bytes.
 */
export function recordBytes(records: Buffer, from: number, length: number, where: string): Buffer {
  if (from + length > records.length) {
    throw new JshipError('TAPE_DAMAGED', `${where}: the catalogue puts ${length} bytes of a record at ${from}, past the segment's ${records.length} bytes of records`, { hint: STORED_SEGMENT_DIFFERS });
  }
  return records.subarray(from, from + length);
}

/** A segment's tar entry name: its number in the media set, zero-padded. */
export function segmentName(number: number): string {
  return `segments/${String(number).padStart(8, '0')}.jrs`;
}

/** The header's bytes, as the associated data of an encrypted payload. */
export function segmentAad(content: Buffer): Buffer {
  return content.subarray(0, SEGMENT_HEADER_SIZE);
}

/**
 * The records' bytes of a (decrypted) payload: a compressed one is
 * decompressed, within the format's payload limit (a frame declaring more
 * is not decompressed: no decompression bombs).
 */
export function recordsPayload(payload: Buffer, sh: SegmentHeader, where: string): Buffer {
  if (!sh.compressed) return payload;
  try {
    return decompressFrame(payload, undefined, MAX_SEGMENT_PAYLOAD);
  } catch (e) {
    throw new JshipError('TAPE_DAMAGED', `${where}: the compressed records cannot be read: ${(e as Error).message}`, { hint: 'the segment is damaged; records from here on cannot be read from this copy', cause: e });
  }
}

/** The records' bytes of an encrypted segment (`content`: header and payload): decrypted against its header, then decompressed when compressed. */
export function openSegment(key: TapeKey, content: Buffer, sh: SegmentHeader, where: string): Buffer {
  return recordsPayload(decryptPayload(key, content.subarray(SEGMENT_HEADER_SIZE), segmentAad(content), where), sh, where);
}

/** A record as it goes into a segment: its encoded header and its data. */
export interface RawRecord {
  header: Buffer;
  data: Uint8Array;
}

/** Parses and verifies the records of a (decrypted) segment payload against its header. */
export function parseRecords(payload: Buffer, sh: SegmentHeader, where: string): Array<{ header: RecordHeader; data: Buffer }> {
  const out: Array<{ header: RecordHeader; data: Buffer }> = [];
  let off = 0;
  for (let i = 0; i < sh.count; i++) {
    let h: RecordHeader;
    try {
      h = decodeRecord(payload, off, `${where} record ${i}`);
      const len = dataLength(h);
      if (off + RECORD_SIZE + len > payload.length) throw new JshipError('RECORD_TRUNCATED', `${where} record ${i}: data runs past the segment`);
      const data = payload.subarray(off + RECORD_SIZE, off + RECORD_SIZE + len);
      verifyData(h, data, `${where} record ${i}`);
      out.push({ header: h, data });
      off += RECORD_SIZE + len;
    } catch (e) {
      throw new JshipError('TAPE_DAMAGED', (e as Error).message, { hint: 'the segment is damaged', cause: e });
    }
  }
  if (off !== payload.length) throw new JshipError('TAPE_DAMAGED', `${where}: ${payload.length - off} bytes after the last of ${sh.count} records`);
  const first = out[0]?.header;
  const last = out[out.length - 1]?.header;
  if (first && last && (first.seq !== sh.firstSeq || last.seq !== sh.lastSeq)) {
    throw new JshipError('TAPE_DAMAGED', `${where}: records span ${first.seq}..${last.seq}, the segment header says ${sh.firstSeq}..${sh.lastSeq}`);
  }
  return out;
}
