/**
 * Bytes received but not yet parsed: chunks as they came off the socket,
 * taken from the front in exact sizes. A take that fits in the first chunk is
 * a view, not a copy.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #head = 0; // bytes of #chunks[0] already taken
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next `n` bytes in one buffer, removed from the queue; undefined while fewer are there. */
  take(n: number): Buffer | undefined {
    const p = this.takePieces(n);
    return Array.isArray(p) ? Buffer.concat(p, n) : p;
  }

  /**
   * The next `n` bytes, removed from the queue, as views of the chunks they
   * lie in (nothing copied: the chunks are not reused); undefined while
   * fewer are there. One chunk's bytes are given as that view alone.
   */
  takePieces(n: number): Buffer | Buffer[] | undefined {
    if (n > this.#length) return undefined;
    const first = this.#chunks[0];
    if (!first) return Buffer.alloc(0);
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
      return out;
    }
    const out: Buffer[] = [];
    for (let filled = 0; filled < n;) {
      const c = this.#chunks[0] as Buffer;
      const k = Math.min(n - filled, c.length - this.#head);
      out.push(c.subarray(this.#head, this.#head + k));
      filled += k;
      this.#advance(k);
    }
    return out;
  }

  /** Drops up to `n` bytes from the front; returns how many were dropped. */
  skip(n: number): number {
    const k = Math.min(n, this.#length);
    for (let left = k; left > 0;) {
      const c = this.#chunks[0] as Buffer;
      const d = Math.min(left, c.length - this.#head);
      this.#advance(d);
      left -= d;
    }
    return k;
  }

  #advance(n: number): void {
    this.#head += n;
    this.#length -= n;
    const first = this.#chunks[0];
    if (first && this.#head === first.length) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }
}
