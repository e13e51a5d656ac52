/**
 * Buffers lent to a reader and taken back to be read into again, so that a
 * stream of large reads does not touch fresh memory for each one (on a VM
 * that hands freed memory back to its host, that is what costs:
 * docs/DECISIONS.md, "Writing files"). Used by an S3 source's ranges and a
 * dialed link socket's TAPE_DATA payloads.
 */
export class BufferLender {
  /** Buffers given back, by size (the last given back is lent first), and their bytes in all. */
  readonly #spare = new Map<number, Buffer[]>();
  #spareBytes = 0;
  /** The memory of the buffers lent and not given back yet. */
  readonly #lent = new WeakSet<ArrayBufferLike>();

  /** `maxSpareBytes`: given-back buffers past this many bytes are left to the collector. */
  constructor(readonly maxSpareBytes: number) {}

  /** A buffer of `size` bytes, its memory its own: one given back before, or a fresh one. */
  lend(size: number): Buffer {
    const spare = this.#spare.get(size)?.pop();
    if (spare) this.#spareBytes -= size;
    const b = spare ?? Buffer.allocUnsafeSlow(size);
    this.#lent.add(b.buffer);
    return b;
  }

  /**
   * Takes back a buffer `lend` gave (or a view of it from its start) that its
   * reader holds nothing of any more. Anything else, or the same buffer a
   * second time, is ignored.
   */
  giveBack(b: Buffer): void {
    if (b.byteOffset !== 0 || !this.#lent.delete(b.buffer)) return;
    const size = b.buffer.byteLength;
    if (this.#spareBytes + size > this.maxSpareBytes) return;
    const list = this.#spare.get(size) ?? [];
    list.push(b.length === size ? b : Buffer.from(b.buffer, 0, size));
    this.#spare.set(size, list);
    this.#spareBytes += size;
  }
}
