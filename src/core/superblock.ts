import { crc32 } from './crc32.js';
import { JshipError } from './errors.js';

/**
 * The journal volume superblock. Two copies sit at offsets 0 and 4096 of the
 * journal file; each write goes to the copy not holding the newest generation,
 * so a torn write leaves the other copy intact. See docs/FORMAT.md.
 *
 * | off | size | field                                              |
 * |-----|------|----------------------------------------------------|
 * |   0 |    8 | magic "JSHIPJV1"                                   |
 * |   8 |    4 | format version (1)                                 |
 * |  12 |    4 | flags (bit 0 clean, 1 suspended, 2 dirty bitmap)  |
 * |  16 |   16 | group id (UUID bytes)                              |
 * |  32 |    8 | generation (higher wins)                           |
 * |  40 |    8 | journal file size                                  |
 * |  48 |    8 | metadata area offset                               |
 * |  56 |    8 | metadata slots (64 bytes each)                     |
 * |  64 |    8 | data area offset                                   |
 * |  72 |    8 | data area size                                     |
 * |  80 |    8 | journal-out: oldest unpurged sequence number       |
 * |  88 |    8 | journal-out: its logical data position             |
 * |  96 |    8 | checkpoint: next sequence number                   |
 * | 104 |    8 | checkpoint: next logical data position             |
 * | 112 |    8 | applied: records up to here are durable on the PVOLs |
 * | 120 |    8 | last timestamp issued (ns)                         |
 * | 128 |    4 | reserved (0)                                       |
 * | 132 |    4 | CRC-32 of bytes 0..131                             |
 */
export const SUPERBLOCK_MAGIC = Buffer.from('JSHIPJV1', 'latin1');
export const SUPERBLOCK_VERSION = 1;
export const SUPERBLOCK_SLOT = 4096;
export const SUPERBLOCK_BYTES = 136;

export const SB_CLEAN = 0x1;
/** Writes are being diverted to the dirty bitmap (journal full under the `suspend` policy). */
export const SB_SUSPENDED = 0x2;
/** The dirty bitmap holds regions that a resync base must still read. */
export const SB_DIRTY_BITMAP = 0x4;

export interface Superblock {
  flags: number;
  groupId: string;
  generation: bigint;
  journalSize: number;
  metaOffset: number;
  metaSlots: number;
  dataOffset: number;
  dataSize: number;
  outSeq: bigint;
  outDataPos: bigint;
  headSeq: bigint;
  headDataPos: bigint;
  appliedSeq: bigint;
  lastTimestamp: bigint;
}

export function uuidToBytes(id: string): Buffer {
  const hex = id.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new JshipError('SUPERBLOCK_BAD_FIELD', `group id "${id}" is not a UUID`);
  return Buffer.from(hex, 'hex');
}

export function bytesToUuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const b = Buffer.alloc(SUPERBLOCK_SLOT);
  SUPERBLOCK_MAGIC.copy(b, 0);
  b.writeUInt32LE(SUPERBLOCK_VERSION, 8);
  b.writeUInt32LE(sb.flags, 12);
  uuidToBytes(sb.groupId).copy(b, 16);
  b.writeBigUInt64LE(sb.generation, 32);
  b.writeBigUInt64LE(BigInt(sb.journalSize), 40);
  b.writeBigUInt64LE(BigInt(sb.metaOffset), 48);
  b.writeBigUInt64LE(BigInt(sb.metaSlots), 56);
  b.writeBigUInt64LE(BigInt(sb.dataOffset), 64);
  b.writeBigUInt64LE(BigInt(sb.dataSize), 72);
  b.writeBigUInt64LE(sb.outSeq, 80);
  b.writeBigUInt64LE(sb.outDataPos, 88);
  b.writeBigUInt64LE(sb.headSeq, 96);
  b.writeBigUInt64LE(sb.headDataPos, 104);
  b.writeBigUInt64LE(sb.appliedSeq, 112);
  b.writeBigUInt64LE(sb.lastTimestamp, 120);
  b.writeUInt32LE(crc32(b.subarray(0, 132)), 132);
  return b;
}

/** Decodes one superblock copy; `where` names it in errors ("journal.jv copy 1"). */
export function decodeSuperblock(buf: Uint8Array, where = 'superblock'): Superblock {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < SUPERBLOCK_BYTES) {
    throw new JshipError('SUPERBLOCK_TRUNCATED', `${where}: ${b.length} of ${SUPERBLOCK_BYTES} bytes present`, {
      hint: 'the journal file is shorter than a superblock: it is not a journal or was truncated',
    });
  }
  if (!b.subarray(0, 8).equals(SUPERBLOCK_MAGIC)) {
    throw new JshipError('SUPERBLOCK_BAD_MAGIC', `${where}: not a jship journal superblock`, {
      hint: 'check that the journal path points at a journal created by `jship init`',
    });
  }
  if (crc32(b.subarray(0, 132)) !== b.readUInt32LE(132)) {
    throw new JshipError('SUPERBLOCK_BAD_CRC', `${where}: checksum mismatch`, { hint: 'this copy is damaged' });
  }
  const version = b.readUInt32LE(8);
  if (version !== SUPERBLOCK_VERSION) {
    throw new JshipError('SUPERBLOCK_BAD_FIELD', `${where}: format version ${version} is not supported`, {
      hint: `this jship reads journal format ${SUPERBLOCK_VERSION}`,
    });
  }
  const num = (off: number, field: string): number => {
    const v = b.readBigUInt64LE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new JshipError('SUPERBLOCK_BAD_FIELD', `${where}: ${field} is out of range`);
    return Number(v);
  };
  const sb: Superblock = {
    flags: b.readUInt32LE(12),
    groupId: bytesToUuid(b.subarray(16, 32)),
    generation: b.readBigUInt64LE(32),
    journalSize: num(40, 'journal size'),
    metaOffset: num(48, 'metadata offset'),
    metaSlots: num(56, 'metadata slots'),
    dataOffset: num(64, 'data offset'),
    dataSize: num(72, 'data size'),
    outSeq: b.readBigUInt64LE(80),
    outDataPos: b.readBigUInt64LE(88),
    headSeq: b.readBigUInt64LE(96),
    headDataPos: b.readBigUInt64LE(104),
    appliedSeq: b.readBigUInt64LE(112),
    lastTimestamp: b.readBigUInt64LE(120),
  };
  const bad = (why: string): never => {
    throw new JshipError('SUPERBLOCK_BAD_FIELD', `${where}: ${why}`, { hint: 'this copy is inconsistent' });
  };
  if (sb.metaOffset < 2 * SUPERBLOCK_SLOT) bad('metadata area overlaps the superblocks');
  if (sb.dataOffset < sb.metaOffset + sb.metaSlots * 64) bad('data area overlaps the metadata area');
  if (sb.dataOffset + sb.dataSize > sb.journalSize) bad('data area runs past the end of the journal');
  if (sb.metaSlots < 1 || sb.dataSize < 1) bad('empty area');
  if (sb.outSeq < 1n || sb.headSeq < sb.outSeq) bad('pointers out of order');
  if (sb.headDataPos < sb.outDataPos) bad('data pointers out of order');
  if (sb.headSeq - sb.outSeq > BigInt(sb.metaSlots)) bad('more records than slots');
  if (sb.headDataPos - sb.outDataPos > BigInt(sb.dataSize)) bad('more data than the data area holds');
  return sb;
}
