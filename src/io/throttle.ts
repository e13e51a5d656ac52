import { RateLimit } from '../core/rate-limit.js';
import { systemMonoNs } from '../core/clock.js';

/** A byte-rate limit that waits (a timer) before letting bytes pass; its rate can change while it runs. */
export class Throttle {
  readonly limit: RateLimit;
  readonly #now: () => bigint;

  constructor(bytesPerSecond: number | null, now: () => bigint = systemMonoNs) {
    this.limit = new RateLimit(bytesPerSecond);
    this.#now = now;
  }

  async pass(bytes: number): Promise<void> {
    const wait = this.limit.take(bytes, this.#now());
    if (wait > 0n) await new Promise((r) => setTimeout(r, Number(wait / 1_000_000n)));
  }
}
