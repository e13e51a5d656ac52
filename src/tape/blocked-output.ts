import { JshipError } from '../core/errors.js';

/** The smallest and largest block a tape device is written with. */
export const MIN_BLOCK = 512;
export const MAX_BLOCK = 16 * 1024 * 1024;

/** Checks a --block-size: a multiple of 512 bytes, at most 16 MiB. */
export function checkBlockSize(n: number): number {
  if (!Number.isSafeInteger(n) || n < MIN_BLOCK || n > MAX_BLOCK || n % 512 !== 0) {
    throw new JshipError('BAD_SIZE', `--block-size ${n} is not a block size jship writes`, { hint: 'a multiple of 512 bytes up to 16M, e.g. 64K (what the drive is set to: mt -f /dev/nst0 setblk)' });
  }
  return n;
}

/**
 * A zstd skippable frame of exactly `n` bytes (n ≥ 8): magic 0x184D2A50
 * (little-endian), the length of what follows, zeros. zstd, tar --zstd and
 * jship's reader all pass over it, so a tape can end on a block boundary.
 */
export function skippableFrame(n: number): Buffer {
  const b = Buffer.alloc(n);
  b.writeUInt32LE(0x184d2a50, 0);
  b.writeUInt32LE(n - 8, 4);
  return b;
}

/**
 * Cuts a byte stream into writes of exactly `blockSize` bytes (what a tape
 * drive in fixed-block mode accepts) and ends it with a skippable frame that
 * fills the last block. `sink` is called once per block, in order.
 */
export class BlockedOutput {
  readonly blockSize: number;
  readonly #sink: (block: Buffer) => Promise<void>;
  readonly #block: Buffer;
  #fill = 0;
  /** Whole blocks written. */
  blocks = 0;

  constructor(blockSize: number, sink: (block: Buffer) => Promise<void>) {
    this.blockSize = checkBlockSize(blockSize);
    this.#sink = sink;
    this.#block = Buffer.alloc(blockSize);
  }

  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(this.blockSize - this.#fill, chunk.length - off);
      chunk.copy(this.#block, this.#fill, off, off + n);
      this.#fill += n;
      off += n;
      if (this.#fill === this.blockSize) await this.#flush();
    }
  }

  /** Pads the last block with a skippable frame (a whole extra block when fewer than 8 bytes are left) and writes it. */
  async end(): Promise<void> {
    if (this.#fill === 0) return;
    let pad = this.blockSize - this.#fill;
    if (pad < 8) pad += this.blockSize;
    await this.write(skippableFrame(pad));
  }

  async #flush(): Promise<void> {
    // The sink gets a copy: the block buffer is reused for the next one while it may still be queued.
    await this.#sink(Buffer.from(this.#block));
    this.#fill = 0;
    this.blocks++;
  }
}
