/**
 * Which parts of a volume were written, coarsely: a bitmap of at most 2^20
 * granules (1 MiB of memory, whatever the size). It errs one way only: a
 * range it calls untouched was never written; one written in part of a
 * granule marks all of it. A restore into a new file (all a hole) uses it to
 * know which chunks are zeros without reading them back.
 */
const MAX_GRANULES = 1 << 20;

export class TouchedMap {
  readonly granule: number;
  readonly #bits: Uint8Array;

  constructor(readonly size: number) {
    let g = 4096;
    while (Math.ceil(size / g) > MAX_GRANULES) g *= 2;
    this.granule = g;
    this.#bits = new Uint8Array(Math.max(1, Math.ceil(size / g)));
  }

  touch(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.min(this.#bits.length - 1, Math.floor((offset + length - 1) / this.granule));
    this.#bits.fill(1, Math.floor(offset / this.granule), last + 1);
  }

  /** Everything untouched again (a file truncated to nothing and back). */
  reset(): void {
    this.#bits.fill(0);
  }

  /** Whether no byte of [offset, offset + length) was touched. */
  untouched(offset: number, length: number): boolean {
    const first = Math.floor(offset / this.granule);
    const last = Math.min(this.#bits.length - 1, Math.floor((offset + Math.max(1, length) - 1) / this.granule));
    for (let i = first; i <= last; i++) if (this.#bits[i] !== 0) return false;
    return true;
  }
}
