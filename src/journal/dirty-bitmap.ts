import { constants, promises as fsp } from 'node:fs';
import { crc32 } from '../core/crc32.js';
import { JshipError } from '../core/errors.js';
import { readFully, writeFileAtomic, writeFully } from '../io/files.js';

const MAGIC = Buffer.from('JSHIPDB1', 'latin1');
const HEADER = 4096;
const MAX_VOLUMES = 500;

/**
 * The dirty bitmap of the `suspend` journal-full policy: one bit per chunk of
 * each volume, set (and written) before a write that the journal could not
 * take is acknowledged. A resync base reads exactly the dirty chunks.
 *
 * File: a 4 KiB header (magic "JSHIPDB1", version u32, chunk size u32,
 * volume count u32, one u64 size per volume, CRC-32 of the header at 4092),
 * then each volume's bits, least significant bit first, byte-aligned per volume.
 */
export class DirtyBitmap {
  readonly chunkSize: number;
  readonly #h: fsp.FileHandle;
  readonly #bits: Buffer[];
  readonly #starts: number[];

  private constructor(h: fsp.FileHandle, chunkSize: number, bits: Buffer[]) {
    this.#h = h;
    this.chunkSize = chunkSize;
    this.#bits = bits;
    this.#starts = [];
    let off = HEADER;
    for (const b of bits) {
      this.#starts.push(off);
      off += b.length;
    }
  }

  static async open(path: string, chunkSize: number, volumeSizes: number[]): Promise<DirtyBitmap> {
    if (volumeSizes.length > MAX_VOLUMES) throw new JshipError('GROUP_BAD_CONFIG', `a group holds at most ${MAX_VOLUMES} volumes`);
    const lengths = volumeSizes.map((s) => Math.ceil(Math.ceil(s / chunkSize) / 8));
    const h = await fsp.open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    let closed = false;
    try {
      const header = await readFully(h, HEADER, 0);
      if (header.length === 0) {
        const bits = lengths.map((n) => Buffer.alloc(n));
        const bm = new DirtyBitmap(h, chunkSize, bits);
        await writeFully(h, encodeHeader(chunkSize, volumeSizes), 0);
        await bm.persist();
        return bm;
      }
      const held = checkHeader(header, path, chunkSize, volumeSizes);
      const bits: Buffer[] = [];
      let off = HEADER;
      for (const [i, n] of lengths.entries()) {
        const was = held[i] as number;
        const now = volumeSizes[i] as number;
        const b = Buffer.alloc(n);
        const had = Math.ceil(Math.ceil(was / chunkSize) / 8);
        await readFully(h, had, off, b, 0);
        off += had;
        // A volume that grew (jship scan adopts a grown file): every chunk of what it grew by is dirty, a partial last one too.
        if (now !== was) for (let c = Math.floor(was / chunkSize); c < Math.ceil(now / chunkSize); c++) b[c >> 3] = (b[c >> 3] as number) | (1 << (c & 7));
        bits.push(b);
      }
      if (held.every((s, i) => s === volumeSizes[i])) return new DirtyBitmap(h, chunkSize, bits);
      // Rewritten in the new layout as a whole (a crash leaves the old file or the new one), then opened again.
      await h.close();
      closed = true;
      await writeFileAtomic(path, Buffer.concat([encodeHeader(chunkSize, volumeSizes), ...bits]));
      return await DirtyBitmap.open(path, chunkSize, volumeSizes);
    } catch (e) {
      if (!closed) await h.close();
      throw e;
    }
  }

  /** Marks the chunks under a range dirty and writes the changed bytes. */
  async mark(volume: number, offset: number, length: number): Promise<void> {
    const bits = this.#bitsOf(volume);
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.chunkSize);
    let lo = Infinity;
    let hi = -1;
    for (let c = first; c <= last; c++) {
      const byte = c >> 3;
      const mask = 1 << (c & 7);
      const v = bits[byte] as number;
      if ((v & mask) === 0) {
        bits[byte] = v | mask;
        lo = Math.min(lo, byte);
        hi = Math.max(hi, byte);
      }
    }
    if (hi >= 0) await writeFully(this.#h, bits.subarray(lo, hi + 1), (this.#starts[volume] as number) + lo);
  }

  /** Sets the chunks under a range in memory (persisted by `persist`). */
  setRange(volume: number, offset: number, length: number): void {
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.chunkSize);
    for (let c = first; c <= last; c++) this.set(volume, c, true);
  }

  isDirty(volume: number, chunk: number): boolean {
    const bits = this.#bitsOf(volume);
    return (((bits[chunk >> 3] as number) >> (chunk & 7)) & 1) === 1;
  }

  /** Sets or clears one chunk's bit in memory (persisted by `persist`). */
  set(volume: number, chunk: number, dirty: boolean): void {
    const bits = this.#bitsOf(volume);
    const v = bits[chunk >> 3] as number;
    bits[chunk >> 3] = dirty ? v | (1 << (chunk & 7)) : v & ~(1 << (chunk & 7));
  }

  /** The dirty chunk indexes of a volume, in order. */
  *dirtyChunks(volume: number): Generator<number> {
    const bits = this.#bitsOf(volume);
    for (let byte = 0; byte < bits.length; byte++) {
      const v = bits[byte] as number;
      if (v === 0) continue;
      for (let b = 0; b < 8; b++) if ((v >> b) & 1) yield byte * 8 + b;
    }
  }

  /** Dirty chunks over all volumes. */
  dirtyCount(): number {
    let n = 0;
    for (const bits of this.#bits) for (const v of bits) n += popcount(v);
    return n;
  }

  async persist(): Promise<void> {
    for (let i = 0; i < this.#bits.length; i++) await writeFully(this.#h, this.#bits[i] as Buffer, this.#starts[i] as number);
  }

  async sync(): Promise<void> {
    await this.#h.datasync();
  }

  async close(): Promise<void> {
    await this.#h.close();
  }

  #bitsOf(volume: number): Buffer {
    const b = this.#bits[volume];
    if (!b) throw new Error(`dirty bitmap: no volume ${volume}`);
    return b;
  }
}

function popcount(v: number): number {
  let n = 0;
  for (let x = v; x; x &= x - 1) n++;
  return n;
}

function encodeHeader(chunkSize: number, sizes: number[]): Buffer {
  const b = Buffer.alloc(HEADER);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(1, 8);
  b.writeUInt32LE(chunkSize, 12);
  b.writeUInt32LE(sizes.length, 16);
  sizes.forEach((s, i) => b.writeBigUInt64LE(BigInt(s), 20 + 8 * i));
  b.writeUInt32LE(crc32(b.subarray(0, HEADER - 4)), HEADER - 4);
  return b;
}

/** Checks the header against the group's chunk size and volumes; returns the volume sizes it was written for (each at most the current one). */
function checkHeader(b: Buffer, path: string, chunkSize: number, sizes: number[]): number[] {
  if (b.length < HEADER || !b.subarray(0, 8).equals(MAGIC) || crc32(b.subarray(0, HEADER - 4)) !== b.readUInt32LE(HEADER - 4)) {
    throw new JshipError('BITMAP_DAMAGED', `dirty bitmap ${path} is damaged`, {
      hint: 'the regions written while the group was suspended are unknown: take a full base (jship export --base)',
    });
  }
  const count = b.readUInt32LE(16);
  const held = count === sizes.length ? sizes.map((_s, i) => Number(b.readBigUInt64LE(20 + 8 * i))) : [];
  const grownOnly = held.length === sizes.length && held.every((s, i) => s <= (sizes[i] as number));
  if (b.readUInt32LE(8) !== 1 || b.readUInt32LE(12) !== chunkSize || !grownOnly) {
    throw new JshipError('BITMAP_DAMAGED', `dirty bitmap ${path} does not match the group's volumes or chunk size`, {
      hint: 'the volumes changed since the bitmap was written: take a full base (jship export --base)',
    });
  }
  return held;
}
