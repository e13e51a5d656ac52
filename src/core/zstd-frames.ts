/**
 * Finds zstd frame boundaries without decompressing (RFC 8878 §3.1): the
 * frame header gives the header length, each block header its size, the
 * descriptor whether a 4-byte checksum follows the last block. Tapes put one
 * tar entry in each frame, so frame boundaries are entry boundaries.
 */
export const ZSTD_MAGIC = 0xfd2fb528;

export type FrameScan =
  /**
   * A whole frame of `length` bytes starts at the offset given;
   * `contentSize` is what its header declares it decompresses to (null: not declared; 0 for a skippable frame).
   */
  | { kind: 'frame'; length: number; contentSize: number | null }
  /** More bytes are needed to know the frame's length. */
  | { kind: 'need-more' }
  /** The bytes at the offset are not a zstd frame (`why` says what is wrong). */
  | { kind: 'invalid'; why: string };

const MAX_BLOCK = 128 * 1024;

/**
 * The most bytes zstd compresses `n` bytes into (ZSTD_COMPRESSBOUND of
 * zstd.h): memory for a frame can be set aside before it is made.
 */
export function compressBound(n: number): number {
  return n + (n >>> 8) + (n < MAX_BLOCK ? (MAX_BLOCK - n) >>> 11 : 0);
}

/** Scans the frame that starts at `buf[off]`. Skippable frames count as frames. */
export function scanFrame(buf: Uint8Array, off: number): FrameScan {
  return scanBytes((i) => buf[i] as number, buf.length, off);
}

/**
 * Scans the frame that starts at `a[0]` and may run on into `b`, as if the
 * two were one buffer, without joining them (a frame cut by a chunk's end).
 */
export function scanFrameAcross(a: Uint8Array, b: Uint8Array): FrameScan {
  return scanBytes((i) => (i < a.length ? a[i] : b[i - a.length]) as number, a.length + b.length, 0);
}

/** The scan over `length` bytes read one at a time by `at` (only headers are read: a few bytes a block). */
function scanBytes(at: (i: number) => number, length: number, off: number): FrameScan {
  const u16 = (i: number): number => at(i) | (at(i + 1) << 8);
  const u32 = (i: number): number => (u16(i) | (u16(i + 2) << 16)) >>> 0;
  const avail = length - off;
  if (avail < 4) return { kind: 'need-more' };
  const magic = u32(off);
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    if (avail < 8) return { kind: 'need-more' };
    const size = u32(off + 4);
    return avail < 8 + size ? { kind: 'need-more' } : { kind: 'frame', length: 8 + size, contentSize: 0 };
  }
  if (magic !== ZSTD_MAGIC) return { kind: 'invalid', why: `no zstd frame magic at this offset (found 0x${magic.toString(16).padStart(8, '0')})` };
  if (avail < 5) return { kind: 'need-more' };
  const fhd = at(off + 4);
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  if ((fhd >> 3) & 1) return { kind: 'invalid', why: 'reserved bit set in the frame header' };
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  const fcsSize = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag] as number;
  const fcsAt = off + 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag]!;
  let pos = fcsAt + fcsSize;
  if (length < pos) return { kind: 'need-more' };
  const contentSize = fcsSize === 0 ? null
    : fcsSize === 1 ? at(fcsAt)
      : fcsSize === 2 ? u16(fcsAt) + 256
        : fcsSize === 4 ? u32(fcsAt)
          : u32(fcsAt) + u32(fcsAt + 4) * 2 ** 32;
  for (;;) {
    if (length - pos < 3) return { kind: 'need-more' };
    const bh = at(pos) | (at(pos + 1) << 8) | (at(pos + 2) << 16);
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) return { kind: 'invalid', why: 'reserved block type' };
    if (size > MAX_BLOCK) return { kind: 'invalid', why: `block of ${size} bytes exceeds the 128 KiB maximum` };
    pos += 3 + (type === 1 ? 1 : size);
    if (last) break;
  }
  pos += checksum ? 4 : 0;
  if (pos > length) return { kind: 'need-more' };
  return { kind: 'frame', length: pos - off, contentSize };
}

/**
 * The most a frame of a jship tape may decompress to: a segment entry at the
 * format's limit with its tar headers and hash entry, or a trailer. Checked
 * on the frame header before a byte is decompressed (no decompression bombs).
 */
export const MAX_FRAME_CONTENT = 64 * 1024 * 1024;

/** Why a scanned frame must not be decompressed, or null when it may. */
export function frameSizeProblem(s: { contentSize: number | null }): string | null {
  if (s.contentSize === null) return 'its header declares no content size (jship writes one in every frame)';
  if (s.contentSize > MAX_FRAME_CONTENT) return `it declares ${s.contentSize} bytes of content, more than the format's ${MAX_FRAME_CONTENT}-byte limit`;
  return null;
}

/**
 * Bytes read where the catalogue puts a frame: one whole frame that may be
 * decompressed (else a plain Error saying why), and its content size.
 */
export function cataloguedFrame(frame: Uint8Array): { contentSize: number } {
  const s = scanFrame(frame, 0);
  if (s.kind !== 'frame' || s.length !== frame.length) throw new Error('not one whole zstd frame at the catalogued offset');
  const tooBig = frameSizeProblem(s);
  if (tooBig !== null) throw new Error(tooBig);
  return { contentSize: s.contentSize as number };
}
