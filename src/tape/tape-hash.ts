import { createHash } from 'node:crypto';
import { loadNative } from '../core/native.js';

/**
 * The BLAKE3 binding, loaded on first use (core/native.ts): loading it takes a few ms,
 * which verbs that never hash a tape (a restore) need not pay at start.
 */
let blake3: typeof import('@napi-rs/blake-hash') | undefined;
const load = (): typeof import('@napi-rs/blake-hash') => (blake3 ??= loadNative('@napi-rs/blake-hash') as typeof import('@napi-rs/blake-hash'));

/**
 * A tape's hash over its whole file: its identity in the chain (the next
 * label's `prevTapeSha256`), the catalogue, the manifest and the link's
 * TAPE_END and CONFIRM. BLAKE3 from tape format 5 (`b3sum` checks it),
 * SHA-256 before (`sha256sum`): four times cheaper here, where each
 * export, import and link end hashed every tape byte (docs/DECISIONS.md,
 * "The tape's hash is BLAKE3…"; docs/FORMAT.md, "The tape's hash"). Both
 * are 64 hex digits; a tape's own version names its algorithm, so a chain
 * may hold both.
 */
export type TapeHashAlgorithm = 'sha256' | 'blake3';

/** The algorithm of a tape of format `version`. */
export function tapeHashOf(version: number): TapeHashAlgorithm {
  return version >= 5 ? 'blake3' : 'sha256';
}

/** How messages and docs name it. */
export const TAPE_HASH_TITLE: Readonly<Record<TapeHashAlgorithm, string>> = { sha256: 'SHA-256', blake3: 'BLAKE3' };

/** An incremental hash giving a hex digest. */
export interface Hasher {
  update(bytes: Uint8Array): void;
  digest(): string;
}

export function newHasher(algorithm: TapeHashAlgorithm): Hasher {
  if (algorithm === 'sha256') {
    const h = createHash('sha256');
    return { update: (b) => void h.update(b), digest: () => h.digest('hex') };
  }
  const h = new (load().Blake3Hasher)();
  // The binding takes a Buffer: a view of the same memory, not a copy.
  return { update: (b) => void h.update(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length)), digest: () => h.digest('hex') };
}

/**
 * A tape's hash over its frames only: bytes are taken as they are read
 * and hashed once a frame that ends past them is known, so that padding
 * after the trailer (a drive's last block) is never part of the hash. The
 * same tape has the same hash on any medium. The algorithm is the label's
 * (`follow`), known before the first frame is hashed.
 */
export class TapeHash {
  #hash: Hasher | undefined;
  readonly #pending: Buffer[] = [];
  /** Bytes hashed so far. */
  hashed = 0;

  /** Hashes with the algorithm of a tape of format `version` (its label's). */
  follow(version: number): void {
    if (!this.#hash) this.#hash = newHasher(tapeHashOf(version));
  }

  add(chunk: Buffer): void {
    this.#pending.push(chunk);
  }

  /** Hashes the bytes before `end` (the end of a frame just read). */
  upTo(end: number): void {
    if (!this.#hash) throw new Error('TapeHash: the label\'s version is not known yet');
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
    if (!this.#hash) throw new Error('TapeHash: nothing was hashed');
    return this.#hash.digest();
  }
}
