import { constants, promises as fsp } from 'node:fs';
import { readInto } from '../io/files.js';
import type { LeafHash } from '../core/volume-digest.js';

/** Chunks read back together, at most this many bytes at once. */
const RUN_BYTES = 8 * 1024 * 1024;

const ANNOUNCED = 1;
const QUEUED = 2;
const READING = 3;
const HASHED = 4;

/**
 * One target's proof, read as the restore goes: each chunk is read back and
 * hashed once the last write the restore makes to it has ended, while the
 * rest is still being written, so that the proof after the last write reads
 * only the chunks nothing wrote.
 *
 * The restore announces every write it will make (`announce`) and then says
 * it has announced them all (`seal`); from then on a chunk whose announced
 * bytes are all written is read back. Every write is checked against what
 * was announced (`willWrite`, `wrote`): a write nobody announced, or one into
 * a chunk already queued or read back, throws and fails the restore. So each
 * leaf is over bytes read after the last write to them, as a proof that reads
 * the whole target at the end would read them.
 */
export class LiveProof {
  readonly #path: string;
  readonly #size: number;
  readonly #chunkSize: number;
  readonly #hash: LeafHash;
  /** Bytes announced in all, per chunk (claims are disjoint: never more than the chunk holds). */
  readonly #announced: Uint32Array;
  /** Announced bytes not yet being written, per chunk. */
  readonly #pending: Uint32Array;
  /** Bytes being written now, per chunk. */
  readonly #writing: Uint32Array;
  readonly #state: Uint8Array;
  readonly #leaves: BigUint64Array;
  /** Chunks to read back, from `#head` on (in the order their last writes ended). */
  #queue: number[] = [];
  #head = 0;
  #sealed = false;
  #reading: Promise<void> | null = null;
  #failed: { error: unknown } | null = null;
  #h: fsp.FileHandle | undefined;
  #buf: Buffer | undefined;
  #closed = false;

  constructor(path: string, size: number, chunkSize: number, hash: LeafHash) {
    this.#path = path;
    this.#size = size;
    this.#chunkSize = chunkSize;
    this.#hash = hash;
    const n = Math.ceil(size / chunkSize);
    this.#announced = new Uint32Array(n);
    this.#pending = new Uint32Array(n);
    this.#writing = new Uint32Array(n);
    this.#state = new Uint8Array(n);
    this.#leaves = new BigUint64Array(n);
  }

  /** The leaf of a chunk read back, if it was. */
  leaf(chunk: number): bigint | undefined {
    return this.#state[chunk] === HASHED ? this.#leaves[chunk] : undefined;
  }

  /** A write the restore will make (before `seal`). */
  announce(offset: number, length: number): void {
    if (this.#sealed) throw new Error(`restore proof: a write at ${offset} announced after the last one`);
    this.#each(offset, length, (c, n) => {
      const [, len] = this.#range(c);
      if ((this.#state[c] as number) >= QUEUED) throw new Error(`restore proof: a write at ${offset} announced into chunk ${c}, read back already`);
      if ((this.#announced[c] as number) + n > len) throw new Error(`restore proof: more bytes announced for chunk ${c} than it holds (writes overlap)`);
      this.#announced[c] = (this.#announced[c] as number) + n;
      this.#pending[c] = (this.#pending[c] as number) + n;
      this.#state[c] = ANNOUNCED;
    });
  }

  /** Every write is announced: chunks already written whole are read back from now on. */
  seal(): void {
    this.#sealed = true;
    for (let c = 0; c < this.#state.length; c++) this.#readyIfDone(c);
    this.#kick();
  }

  /** Before a write: throws unless it was announced and its chunks are not read back yet. */
  willWrite(offset: number, length: number): void {
    this.#each(offset, length, (c, n) => {
      if ((this.#state[c] as number) >= QUEUED) throw new Error(`restore proof: chunk ${c} written after it was read back`);
      if ((this.#pending[c] as number) < n) throw new Error(`restore proof: a write at ${offset} (${length} bytes) into chunk ${c} was not announced`);
    });
    this.#each(offset, length, (c, n) => {
      this.#pending[c] = (this.#pending[c] as number) - n;
      this.#writing[c] = (this.#writing[c] as number) + n;
    });
  }

  /** After a write ended: its chunks that have nothing more to come are read back. */
  wrote(offset: number, length: number): void {
    this.#each(offset, length, (c, n) => {
      if ((this.#writing[c] as number) < n) throw new Error(`restore proof: a write at ${offset} into chunk ${c} ended that had not begun`);
      this.#writing[c] = (this.#writing[c] as number) - n;
      this.#readyIfDone(c);
    });
    this.#kick();
  }

  /** Waits for the chunks queued to be read back; throws what a read-back failed with. */
  async settle(): Promise<void> {
    while (this.#reading) await this.#reading;
    if (this.#failed) throw this.#failed.error;
  }

  /** Stops reading back (what is being read ends first) and closes the target's read handle. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#queue = [];
    this.#head = 0;
    while (this.#reading) await this.#reading;
    await this.#h?.close();
    this.#h = undefined;
  }

  #range(c: number): [number, number] {
    const start = c * this.#chunkSize;
    return [start, Math.min(this.#chunkSize, this.#size - start)];
  }

  /** Calls `f(chunk, bytes of [offset, offset + length) in it)` for each chunk the range touches. */
  #each(offset: number, length: number, f: (c: number, n: number) => void): void {
    if (length <= 0) return;
    if (offset < 0 || offset + length > this.#size) throw new Error(`restore proof: a write at ${offset} (${length} bytes) is outside the volume's ${this.#size} bytes`);
    for (let c = Math.floor(offset / this.#chunkSize), end = offset + length; c * this.#chunkSize < end; c++) {
      const [start, len] = this.#range(c);
      f(c, Math.min(end, start + len) - Math.max(offset, start));
    }
  }

  #readyIfDone(c: number): void {
    if (this.#sealed && this.#state[c] === ANNOUNCED && this.#pending[c] === 0 && this.#writing[c] === 0) {
      this.#state[c] = QUEUED;
      this.#queue.push(c);
    }
  }

  #kick(): void {
    if (this.#reading || this.#failed || this.#closed || this.#head === this.#queue.length) return;
    this.#reading = this.#readLoop().catch((error: unknown) => {
      this.#failed ??= { error };
    }).finally(() => {
      this.#reading = null;
      this.#kick(); // queued after the loop's last look
    });
  }

  #take(): number | undefined {
    if (this.#head === this.#queue.length) return undefined;
    const c = this.#queue[this.#head++] as number;
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return c;
  }

  /** Reads back runs of queued chunks (adjacent ones together), one read at a time, until none is queued. */
  async #readLoop(): Promise<void> {
    this.#h ??= await fsp.open(this.#path, constants.O_RDONLY);
    while (!this.#closed) {
      const first = this.#take();
      if (first === undefined) break;
      // Read already with a chunk before it.
      if (this.#state[first] !== QUEUED) continue;
      let last = first;
      // Chunks queued after `first` that follow it on disk are read with it (skipped when the queue reaches them).
      while (last + 1 < this.#state.length && this.#state[last + 1] === QUEUED && (last + 2 - first) * this.#chunkSize <= RUN_BYTES) last++;
      for (let c = first; c <= last; c++) this.#state[c] = READING;
      const [offset] = this.#range(first);
      const [lastStart, lastLen] = this.#range(last);
      const length = lastStart + lastLen - offset;
      if (!this.#buf || this.#buf.length < length) this.#buf = Buffer.allocUnsafeSlow(Math.max(length, Math.min(RUN_BYTES, this.#size)));
      const buf = this.#buf.subarray(0, length);
      const n = await readInto(this.#h, buf, offset);
      buf.fill(0, n); // past the end of a device or file: zeros, as the proof at the end reads them
      for (let c = first; c <= last; c++) {
        const [start, len] = this.#range(c);
        this.#leaves[c] = this.#hash(buf.subarray(start - offset, start - offset + len));
        this.#state[c] = HASHED;
      }
    }
  }
}
