import { constants, promises as fsp } from 'node:fs';
import { crc32 } from 'node:zlib';
import { JshipError } from '../core/errors.js';
import { readFully, writeFully } from '../io/files.js';

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
    try {
      const header = await readFully(h, HEADER, 0);
      if (header.length === 0) {
        const bits = lengths.map((n) => Buffer.alloc(n));
        const bm = new DirtyBitmap(h, chunkSize, bits);
        await writeFully(h, encodeHeader(chunkSize, volumeSizes), 0);
        await bm.persist();
        return bm;
      }
      checkHeader(header, path, chunkSize, volumeSizes);
      const bits: Buffer[] = [];
      let off = HEADER;
      for (const n of lengths) {
        const b = Buffer.alloc(n);
        await readFully(h, n, off, b, 0);
        bits.push(b);
        off += n;
      }
      return new DirtyBitmap(h, chunkSize, bits);
    } catch (e) {
      await h.close();
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

function checkHeader(b: Buffer, path: string, chunkSize: number, sizes: number[]): void {
  const expect = encodeHeader(chunkSize, sizes);
  if (b.length < HEADER || !b.subarray(0, 8).equals(MAGIC) || crc32(b.subarray(0, HEADER - 4)) !== b.readUInt32LE(HEADER - 4)) {
    throw new JshipError('BITMAP_DAMAGED', `dirty bitmap ${path} is damaged`, {
      hint: 'the regions written while the group was suspended are unknown: take a full base (jship export --base)',
    });
  }
  if (!b.equals(expect)) {
    throw new JshipError('BITMAP_DAMAGED', `dirty bitmap ${path} does not match the group's volumes or chunk size`, {
      hint: 'the volumes changed since the bitmap was written: take a full base (jship export --base)',
    });
  }
}
