import { crc32 } from './crc32.js';

/**
 * Bytes that may lie in several pieces: a write's payload as it came off a
 * socket (64 KiB reads), passed on as views of those reads instead of being
 * copied into one buffer first. The pieces are in order; none is empty
 * except in an empty list.
 */
export type Bytes = Uint8Array | readonly Uint8Array[];

export function byteLength(b: Bytes): number {
  if (b instanceof Uint8Array) return b.length;
  let n = 0;
  for (const p of b) n += p.length;
  return n;
}

/** Bytes `start..end` as views of `b` (one piece is given as that piece): nothing is copied. */
export function sliceBytes(b: Bytes, start: number, end: number): Bytes {
  if (b instanceof Uint8Array) return b.subarray(start, end);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of b) {
    const from = Math.max(start - at, 0);
    const to = Math.min(end - at, p.length);
    if (from < to) out.push(from === 0 && to === p.length ? p : p.subarray(from, to));
    at += p.length;
    if (at >= end) break;
  }
  return out.length === 1 ? (out[0] as Uint8Array) : out;
}

/** The pieces of `b`, in order. */
export function piecesOf(b: Bytes): readonly Uint8Array[] {
  return b instanceof Uint8Array ? [b] : b;
}

/** `b` in one buffer: a view of the piece when there is one, else a copy. */
export function joinBytes(b: Bytes): Buffer {
  const one = b instanceof Uint8Array ? b : b.length === 1 ? b[0] : undefined;
  if (one) return Buffer.isBuffer(one) ? one : Buffer.from(one.buffer, one.byteOffset, one.length);
  return Buffer.concat(b as Uint8Array[]);
}

/** CRC-32 over the pieces in order: the same as over the joined bytes. */
export function crc32Bytes(b: Bytes): number {
  if (b instanceof Uint8Array) return crc32(b);
  let c = 0;
  for (const p of b) c = crc32(p, c);
  return c;
}
