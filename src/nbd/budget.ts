/**
 * Bytes held by requests in flight (write payloads received, read data not
 * yet handed to the socket), shared by all connections of a server. A
 * connection stops reading its socket while the budget is over its limit and
 * is woken when bytes are given back: 32 MiB writes from many clients and a
 * slow disk cannot balloon memory.
 */
export class Budget {
  #used = 0;
  readonly #waiters = new Set<() => void>();

  constructor(readonly limit: number) {}

  get used(): number {
    return this.#used;
  }

  get over(): boolean {
    return this.#used >= this.limit;
  }

  take(n: number): void {
    this.#used += n;
  }

  give(n: number): void {
    this.#used -= n;
    if (this.#used < this.limit && this.#waiters.size > 0) {
      const ws = [...this.#waiters];
      this.#waiters.clear();
      for (const w of ws) w();
    }
  }

  /** Calls `wake` once, the next time bytes are given back below the limit. */
  wait(wake: () => void): void {
    this.#waiters.add(wake);
  }

  cancel(wake: () => void): void {
    this.#waiters.delete(wake);
  }
}
