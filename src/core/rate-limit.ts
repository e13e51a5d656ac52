/**
 * A byte-rate limit (the generic cell rate algorithm, as token buckets do it
 * without a timer): each `take(n, now)` says how long to wait before sending
 * n bytes so that, over any window, no more than rate × window + burst bytes
 * pass. Pure: the time is passed in (ns). A rate of null is no limit. The
 * default burst, half a second, lets a sender make up short pauses of its
 * own (an fsync, a link confirmation) while keeping any 10 s window within
 * 5 % of the rate.
 */
export class RateLimit {
  #rate: number | null;
  readonly #burstNs: bigint;
  /** When the bytes already allowed would have been sent at the rate (theoretical arrival time). */
  #tat = 0n;

  constructor(bytesPerSecond: number | null, burstSeconds = 0.5) {
    this.#rate = RateLimit.#check(bytesPerSecond);
    this.#burstNs = BigInt(Math.round(burstSeconds * 1e9));
  }

  static #check(r: number | null): number | null {
    if (r !== null && !(Number.isFinite(r) && r > 0)) throw new RangeError(`a rate limit is a positive number of bytes per second, not ${r}`);
    return r;
  }

  get rate(): number | null {
    return this.#rate;
  }

  /** Changes the rate from now on (null: no limit). */
  setRate(bytesPerSecond: number | null): void {
    this.#rate = RateLimit.#check(bytesPerSecond);
  }

  /** Reserves n bytes at `now`; returns the ns to wait before sending them (0: at once). */
  take(n: number, now: bigint): bigint {
    if (this.#rate === null) {
      this.#tat = now;
      return 0n;
    }
    const start = this.#tat > now ? this.#tat : now;
    const wait = start - now - this.#burstNs;
    this.#tat = start + BigInt(Math.ceil((n / this.#rate) * 1e9));
    return wait > 0n ? wait : 0n;
  }
}
