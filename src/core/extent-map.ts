/**
 * What each byte of a volume holds at a point in time, built by claiming
 * records newest first (patent §0123: the last record to write a byte wins
 * it): a sorted list of disjoint extents, each naming its source (a segment
 * payload and the offset in it where the extent's bytes start, or zeros).
 * Bytes no record claimed are not listed (they read as zeros).
 *
 * Byte-granular, so records need not sit on sector boundaries. Kept in
 * typed-array chunks of 1024 extents (24 bytes each): a claim costs
 * a binary search and a move within one chunk, and a million records over a
 * 1 TiB volume take tens of MiB, not the 256 MiB of a sector bitmap.
 */

/** The source of a zero extent (zero and trim records, zero base chunks). */
export const ZERO_SOURCE = -1;

/** An extent of the map: bytes [start, end) come from `source` (ZERO_SOURCE: zeros) at `from`. */
export interface MappedExtent {
  start: number;
  end: number;
  source: number;
  from: number;
}

class Chunk {
  n = 0;
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly source: Int32Array;
  readonly from: Uint32Array;

  constructor(cap: number) {
    this.start = new Float64Array(cap);
    this.end = new Float64Array(cap);
    this.source = new Int32Array(cap);
    this.from = new Uint32Array(cap);
  }
}

export class ExtentMap {
  readonly size: number;
  readonly #cap: number;
  readonly #chunks: Chunk[];
  /** Number of extents. */
  count = 0;

  /** `chunk`: extents per chunk (small ones only to test the splits). */
  constructor(size: number, chunk = 1024) {
    this.size = size;
    this.#cap = Math.max(2, chunk);
    this.#chunks = [new Chunk(this.#cap)];
  }

  /**
   * Claims the bytes of [start, end) (clipped to the volume) no newer record
   * claimed, for `source` whose bytes for `start` are at `from`. Returns the
   * number of bytes won; `won` is told each run of them.
   */
  claim(start: number, end: number, source: number, from: number, won?: (start: number, end: number) => void): number {
    end = Math.min(end, this.size);
    let total = 0;
    let at = start;
    while (at < end) {
      const { c, i } = this.#locate(at);
      const chunk = this.#chunks[c] as Chunk;
      const nextStart = i < chunk.n ? (chunk.start[i] as number) : Infinity;
      if (nextStart <= at) {
        at = chunk.end[i] as number; // claimed already by a newer record
        continue;
      }
      const to = Math.min(end, nextStart);
      this.#insert(c, i, at, to, source, from + (at - start));
      won?.(at, to);
      total += to - at;
      at = to;
    }
    return total;
  }

  /** The extents that overlap [offset, offset + length), in order. */
  *extents(offset: number, length: number): Generator<MappedExtent> {
    const end = offset + length;
    let { c, i } = this.#locate(offset);
    for (; c < this.#chunks.length; c++, i = 0) {
      const k = this.#chunks[c] as Chunk;
      for (; i < k.n; i++) {
        const s = k.start[i] as number;
        if (s >= end) return;
        yield { start: s, end: k.end[i] as number, source: k.source[i] as number, from: k.from[i] as number };
      }
    }
  }

  /** Whether every byte of [start, end) (clipped to the volume) is claimed: no later claim can take any of it. */
  covers(start: number, end: number): boolean {
    end = Math.min(end, this.size);
    let at = start;
    for (const e of this.extents(start, end - start)) {
      if (e.start > at) return false;
      at = Math.max(at, e.end);
      if (at >= end) return true;
    }
    return at >= end;
  }

  /** Bytes held in typed arrays (for the memory budget). */
  get bytes(): number {
    return this.#chunks.length * this.#cap * 24;
  }

  /** Chunk and index of the first extent that ends after `at` (i may equal the chunk's n: none after). */
  #locate(at: number): { c: number; i: number } {
    const chunks = this.#chunks;
    // The last chunk whose first extent starts at or before `at`.
    let lo = 0;
    let hi = chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const k = chunks[mid] as Chunk;
      if (k.n > 0 && (k.start[0] as number) <= at) lo = mid;
      else hi = mid - 1;
    }
    let c = lo;
    let k = chunks[c] as Chunk;
    let a = 0;
    let b = k.n;
    while (a < b) {
      const mid = (a + b) >> 1;
      if ((k.end[mid] as number) <= at) a = mid + 1;
      else b = mid;
    }
    // Past every extent of this chunk: the first of the next one (if any) is the answer.
    if (a === k.n && c + 1 < chunks.length) {
      c++;
      k = chunks[c] as Chunk;
      a = 0;
    }
    return { c, i: a };
  }

  #insert(c: number, i: number, start: number, end: number, source: number, from: number): void {
    let k = this.#chunks[c] as Chunk;
    // Zeros next to zeros become one extent (a sparse base is a few extents, not one per chunk).
    if (source === ZERO_SOURCE) {
      const before = this.#chunks[c - 1];
      const prev = i > 0 ? { k, j: i - 1 } : before ? { k: before, j: before.n - 1 } : undefined;
      const prevZero = prev !== undefined && prev.j >= 0 && prev.k.source[prev.j] === ZERO_SOURCE && prev.k.end[prev.j] === start;
      const nextZero = i < k.n && k.source[i] === ZERO_SOURCE && k.start[i] === end;
      if (prevZero && nextZero && prev.k === k) {
        k.end[i - 1] = k.end[i] as number;
        this.#remove(k, i);
        return;
      }
      if (prevZero) {
        prev.k.end[prev.j] = end;
        return;
      }
      if (nextZero) {
        k.start[i] = start;
        return;
      }
    }
    if (k.n === this.#cap) {
      // Split in halves; the new extent goes into the half that holds position i.
      const right = new Chunk(this.#cap);
      const half = this.#cap >> 1;
      right.start.set(k.start.subarray(half));
      right.end.set(k.end.subarray(half));
      right.source.set(k.source.subarray(half));
      right.from.set(k.from.subarray(half));
      right.n = this.#cap - half;
      k.n = half;
      this.#chunks.splice(c + 1, 0, right);
      if (i > half) {
        k = right;
        i -= half;
      }
    }
    k.start.copyWithin(i + 1, i, k.n);
    k.end.copyWithin(i + 1, i, k.n);
    k.source.copyWithin(i + 1, i, k.n);
    k.from.copyWithin(i + 1, i, k.n);
    k.start[i] = start;
    k.end[i] = end;
    k.source[i] = source;
    k.from[i] = from;
    k.n++;
    this.count++;
  }

  #remove(k: Chunk, i: number): void {
    k.start.copyWithin(i, i + 1, k.n);
    k.end.copyWithin(i, i + 1, k.n);
    k.source.copyWithin(i, i + 1, k.n);
    k.from.copyWithin(i, i + 1, k.n);
    k.n--;
    this.count--;
    if (k.n === 0 && this.#chunks.length > 1) this.#chunks.splice(this.#chunks.indexOf(k), 1);
  }
}
