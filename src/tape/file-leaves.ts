import type { LeafHash } from '../core/volume-digest.js';
import { readFullySync } from '../io/files.js';

/**
 * The leaves of a point digest (core/volume-digest.ts: each chunk's XXH64)
 * over a run of a file's chunks, read and hashed on the calling thread (a
 * frame worker's): a restore's proof reads back what it wrote with every
 * worker at once, ranges of chunks side by side.
 */
export interface FileLeavesRequest {
  /** The file's descriptor (held open by the caller until the answer). */
  fd: number;
  /** The volume's size (bytes past the file's end read as zeros) and the digest's chunk size. */
  size: number;
  chunkSize: number;
  /** The chunks hashed: `count` from chunk `first`. */
  first: number;
  count: number;
  /** One byte for each of those chunks: 1 when it is known to be zeros (a hole of a new file), and not read. */
  zeros: Uint8Array;
}

let chunkBuf = Buffer.alloc(0);

/** The leaves of the chunks asked for, in chunk order. */
export function fileLeaves(m: FileLeavesRequest, hash: LeafHash): BigUint64Array {
  const out = new BigUint64Array(m.count);
  const zeroLeaves = new Map<number, bigint>();
  for (let i = 0; i < m.count; i++) {
    const start = (m.first + i) * m.chunkSize;
    const length = Math.min(m.chunkSize, m.size - start);
    if (m.zeros[i] === 1) {
      let leaf = zeroLeaves.get(length);
      if (leaf === undefined) zeroLeaves.set(length, (leaf = hash(new Uint8Array(length))));
      out[i] = leaf;
      continue;
    }
    if (chunkBuf.length < length) chunkBuf = Buffer.allocUnsafeSlow(length);
    const b = chunkBuf.subarray(0, length);
    b.fill(0, readFullySync(m.fd, b, start));
    out[i] = hash(b);
  }
  return out;
}
