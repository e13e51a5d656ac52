import { createHash } from 'node:crypto';

/**
 * A tape's SHA-256 over its frames only: bytes are taken as they are read
 * and hashed once a frame that ends past them is known, so that padding
 * after the trailer (a drive's last block) is never part of the hash. The
 * same tape has the same hash on any medium.
 */
export class TapeHash {
  readonly #hash = createHash('sha256');
  readonly #pending: Buffer[] = [];
  /** Bytes hashed so far. */
  hashed = 0;

  add(chunk: Buffer): void {
    this.#pending.push(chunk);
  }

  /** Hashes the bytes before `end` (the end of a frame just read). */
  upTo(end: number): void {
    while (this.hashed < end) {
      const c = this.#pending[0];
      if (!c) return;
      const n = Math.min(c.length, end - this.hashed);
      this.#hash.update(n === c.length ? c : c.subarray(0, n));
      this.hashed += n;
      if (n === c.length) this.#pending.shift();
      else this.#pending[0] = c.subarray(n);
    }
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}
