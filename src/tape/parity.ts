import { JshipError } from '../core/errors.js';
import { tarPieces } from './tar-entry.js';
import { ZSTD_MAGIC } from '../core/zstd-frames.js';
import { MAX_SHARDS } from '../core/reed-solomon.js';

/**
 * Parity of a tape (export --parity PERCENT): its frames — the label's and
 * every segment's, as they lie on the tape — are taken in groups, and each
 * group is followed by a parity frame holding Reed-Solomon parity shards
 * over the group's frames (each padded with zeros to the group's longest).
 * Any `parityShards` frames of a group may be damaged or missing and are
 * rebuilt byte for byte. docs/FORMAT.md "Parity".
 */

/** At most this many frames in a group (the label counts in the first). */
export const GROUP_FRAMES = 20;
/** A group is closed before its frames pass this many bytes (they are held in memory until its parity is written). */
export const GROUP_BYTES = 64 * 1024 * 1024;
/** A group is closed before its parity passes this many bytes (a parity frame stays under the format's frame limit). */
export const MAX_PARITY_BYTES = 48 * 1024 * 1024;

/** The parity shards a group of `frames` frames gets at `percent` parity: at least one. */
export function parityShards(frames: number, percent: number): number {
  return Math.min(MAX_SHARDS - frames, Math.max(1, Math.ceil((frames * percent) / 100)));
}

/** Whether a group of `frames` frames, the longest `longest` bytes, is within the limits. */
export function groupFits(frames: number, bytes: number, longest: number, percent: number): boolean {
  return frames <= GROUP_FRAMES && bytes <= GROUP_BYTES && parityShards(frames, percent) * longest <= MAX_PARITY_BYTES;
}

/** One frame of a group, as it lies on the tape. */
export interface GroupFrame {
  /** The tar entry it holds first: jship-label.json or segments/NNNNNNNN.jrs. */
  entry: string;
  offset: number;
  length: number;
  /** SHA-256 of the frame's bytes (compressed, as on the tape). */
  sha256: string;
}

/** The JSON entry of a parity frame (parity/NNNNNN.json). */
export interface ParityHeader {
  format: 'jship-parity';
  version: 1;
  /** Its place among the tape's parity frames, from 1. */
  number: number;
  /** Every shard is this long: the group's longest frame. */
  shardBytes: number;
  frames: GroupFrame[];
  /** SHA-256 of each parity shard, in the order of parity/NNNNNN.bin. */
  parity: string[];
}

/** Where a parity frame lies (the trailer lists them, so that a damaged tape's parity is found). */
export interface ParityFrameRef {
  name: string;
  offset: number;
  length: number;
  sha256: string;
}

export const parityJsonName = (n: number): string => `parity/${String(n).padStart(6, '0')}.json`;
export const parityBinName = (n: number): string => `parity/${String(n).padStart(6, '0')}.bin`;
export const PARITY_ENTRY = /^parity\/(\d{6})\.(json|bin)$/;

const HEX64 = /^[0-9a-f]{64}$/;
const ENTRY = /^(jship-label\.json|segments\/\d{8}\.jrs)$/;

function bad(where: string, why: string): never {
  throw new JshipError('TAPE_DAMAGED', `${where}: parity header ${why}`, { hint: 'the parity frame is damaged or not one jship writes' });
}

const isCount = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;

function encodeParityHeader(h: ParityHeader): Buffer {
  return Buffer.from(`${JSON.stringify(h)}\n`, 'utf8');
}

/** Decodes and checks a parity header: every field, every bound (it is read from a tape that may be damaged). */
export function decodeParityHeader(bytes: Buffer, where: string): ParityHeader {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return bad(where, 'is not JSON');
  }
  if (typeof v !== 'object' || v === null || v.format !== 'jship-parity' || v.version !== 1) bad(where, 'is not a jship-parity version 1 object');
  if (!isCount(v.number, 1e9) || v.number < 1) bad(where, 'has no valid number');
  if (!isCount(v.shardBytes, MAX_PARITY_BYTES) || v.shardBytes < 1) bad(where, 'has no valid shardBytes');
  const frames = v.frames;
  if (!Array.isArray(frames) || frames.length < 1 || frames.length > GROUP_FRAMES) bad(where, `lists ${Array.isArray(frames) ? frames.length : 'no'} frames (1..${GROUP_FRAMES})`);
  for (const f of frames as unknown[]) {
    const o = f as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.entry !== 'string' || !ENTRY.test(o.entry) || !isCount(o.offset, Number.MAX_SAFE_INTEGER) || !isCount(o.length, v.shardBytes as number) || o.length < 1
      || typeof o.sha256 !== 'string' || !HEX64.test(o.sha256)) bad(where, 'lists a frame that is not {entry, offset, length ≤ shardBytes, sha256}');
  }
  const parity = v.parity;
  if (!Array.isArray(parity) || parity.length < 1 || parity.length + frames.length > MAX_SHARDS || parity.some((p) => typeof p !== 'string' || !HEX64.test(p))) bad(where, 'has no valid parity list');
  if ((parity as unknown[]).length * (v.shardBytes as number) > MAX_PARITY_BYTES) bad(where, 'declares more parity than the format allows');
  return { format: 'jship-parity', version: 1, number: v.number as number, shardBytes: v.shardBytes as number, frames: frames as GroupFrame[], parity: parity as string[] };
}

/** Checks the trailer's list of parity frames (a field of the trailer: decodeTrailer calls it). */
export function checkParityRefs(v: unknown, where: string): ParityFrameRef[] {
  if (!Array.isArray(v) || v.length > 1_000_000) bad(where, 'list in the trailer is not an array');
  for (const r of v as unknown[]) {
    const o = r as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.name !== 'string' || !/^parity\/\d{6}\.json$/.test(o.name) || !isCount(o.offset, Number.MAX_SAFE_INTEGER)
      || !isCount(o.length, Number.MAX_SAFE_INTEGER) || typeof o.sha256 !== 'string' || !HEX64.test(o.sha256)) bad(where, 'reference in the trailer is not {name, offset, length, sha256}');
  }
  return v as ParityFrameRef[];
}

const MAX_RAW_BLOCK = 128 * 1024;

/**
 * The parity frame: its header and its shards as two tar entries, in a
 * zstd frame of raw (stored) blocks. Parity is incompressible, and stored
 * blocks make the frame a function of its content alone (mtime 0, no
 * checksum: the header's hashes cover it), so a lost parity frame is made
 * again, byte for byte, from the frames of its group.
 */
export function parityFrame(h: ParityHeader, shards: ReadonlyArray<Uint8Array>): Buffer {
  return rawZstdFrame(Buffer.concat(tarPieces([
    { name: parityJsonName(h.number), content: [encodeParityHeader(h)] },
    { name: parityBinName(h.number), content: shards },
  ], { mtime: new Date(0), eof: false })));
}

/** A zstd frame of raw blocks (RFC 8878): single segment, 8-byte content size, no checksum. */
export function rawZstdFrame(content: Buffer): Buffer {
  const blocks = Math.max(1, Math.ceil(content.length / MAX_RAW_BLOCK));
  const out = Buffer.alloc(4 + 1 + 8 + blocks * 3 + content.length);
  out.writeUInt32LE(ZSTD_MAGIC, 0);
  out[4] = 0xe0; // content size flag 3 (8 bytes), single segment
  out.writeBigUInt64LE(BigInt(content.length), 5);
  let pos = 13;
  for (let b = 0; b < blocks; b++) {
    const piece = content.subarray(b * MAX_RAW_BLOCK, (b + 1) * MAX_RAW_BLOCK);
    const header = (b === blocks - 1 ? 1 : 0) | (piece.length << 3); // raw block: type 0
    out.writeUIntLE(header, pos, 3);
    piece.copy(out, pos + 3);
    pos += 3 + piece.length;
  }
  return out;
}
