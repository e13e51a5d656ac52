import { RECORD_SIZE, dataLength, type RecordHeader } from './record.js';

/**
 * A segment's record index, kept in the catalogue: per record 40 bytes, so a
 * restore can plan (which record wins which byte range) without
 * decompressing a single segment, and then read only the segments whose data
 * survives.
 *
 * | off | size | field |
 * |-----|------|-------|
 * | 0 | 8 | sequence number (base: position) |
 * | 8 | 8 | timestamp |
 * | 16 | 8 | volume offset |
 * | 24 | 8 | length |
 * | 32 | 4 | offset of the record's data in the segment's (decrypted) payload |
 * | 36 | 2 | volume index |
 * | 38 | 1 | record type |
 * | 39 | 1 | flags |
 */
export const INDEX_ENTRY = 40;

export interface IndexEntry {
  seq: bigint;
  ts: bigint;
  offset: number;
  length: number;
  dataOff: number;
  volume: number;
  type: number;
  flags: number;
}

/** Builds the index of records laid out back to back (header + data) in a payload. */
export function buildRecordIndex(headers: RecordHeader[]): Buffer {
  const b = Buffer.alloc(headers.length * INDEX_ENTRY);
  let payloadOff = 0;
  headers.forEach((h, i) => {
    const o = i * INDEX_ENTRY;
    b.writeBigUInt64LE(h.seq, o);
    b.writeBigUInt64LE(h.timestamp, o + 8);
    b.writeBigUInt64LE(BigInt(h.offset), o + 16);
    b.writeBigUInt64LE(BigInt(h.length), o + 24);
    b.writeUInt32LE(payloadOff + RECORD_SIZE, o + 32);
    b.writeUInt16LE(h.volume, o + 36);
    b[o + 38] = h.type;
    b[o + 39] = h.flags;
    payloadOff += RECORD_SIZE + dataLength(h);
  });
  return b;
}

export function readIndexEntry(b: Buffer, i: number): IndexEntry {
  const o = i * INDEX_ENTRY;
  return {
    seq: b.readBigUInt64LE(o),
    ts: b.readBigUInt64LE(o + 8),
    offset: Number(b.readBigUInt64LE(o + 16)),
    length: Number(b.readBigUInt64LE(o + 24)),
    dataOff: b.readUInt32LE(o + 32),
    volume: b.readUInt16LE(o + 36),
    type: b[o + 38] as number,
    flags: b[o + 39] as number,
  };
}

/**
 * Entry i's fields a mount's map needs, read in place (no object, one
 * BigInt): the hot loop over a million records. Offsets and lengths are
 * below 2^53 (volumes are at most 2^50 bytes).
 */
export const indexSeq = (b: Buffer, i: number): bigint => b.readBigUInt64LE(i * INDEX_ENTRY);
export const indexOffset = (b: Buffer, i: number): number => b.readUInt32LE(i * INDEX_ENTRY + 16) + b.readUInt32LE(i * INDEX_ENTRY + 20) * 2 ** 32;
export const indexRecordLength = (b: Buffer, i: number): number => b.readUInt32LE(i * INDEX_ENTRY + 24) + b.readUInt32LE(i * INDEX_ENTRY + 28) * 2 ** 32;
export const indexDataOff = (b: Buffer, i: number): number => b.readUInt32LE(i * INDEX_ENTRY + 32);
export const indexVolume = (b: Buffer, i: number): number => b.readUInt16LE(i * INDEX_ENTRY + 36);
export const indexType = (b: Buffer, i: number): number => b[i * INDEX_ENTRY + 38] as number;
export const indexFlags = (b: Buffer, i: number): number => b[i * INDEX_ENTRY + 39] as number;

export function indexLength(b: Buffer): number {
  return Math.floor(b.length / INDEX_ENTRY);
}
