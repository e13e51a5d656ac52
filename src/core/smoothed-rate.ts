/**
 * The rate a progress bar shows, and its ETA: an exponentially weighted
 * moving average of the rate between samples (time constant `tauMs`), so
 * bursty reports (a segment at a time, a tape at a time) do not make the
 * ETA jump, and nothing before `warmupMs` is shown (the first sample of a
 * burst read from cache is not the rate: "3.47 GiB/s" then 40 MB/s).
 */
export class SmoothedRate {
  readonly #tauMs: number;
  readonly #warmupMs: number;
  #t0: number | undefined;
  #lastT = 0;
  #lastDone = 0;
  #t0Done = 0;
  #rate: number | undefined;

  constructor(opts: { tauMs?: number; warmupMs?: number } = {}) {
    this.#tauMs = opts.tauMs ?? 5000;
    this.#warmupMs = opts.warmupMs ?? 1000;
  }

  /** Records `done` units at time `nowMs`. */
  sample(done: number, nowMs: number): void {
    if (this.#t0 === undefined) {
      this.#t0 = this.#lastT = nowMs;
      this.#t0Done = this.#lastDone = done;
      return;
    }
    if (nowMs - this.#t0 < this.#warmupMs) {
      this.#lastDone = done;
      return;
    }
    if (this.#rate === undefined) {
      // The first rate is the average over the warm-up, bursts and all.
      this.#rate = ((done - this.#t0Done) * 1000) / (nowMs - this.#t0);
    } else {
      const dt = nowMs - this.#lastT;
      if (dt <= 0) return;
      const inst = ((done - this.#lastDone) * 1000) / dt;
      this.#rate += (1 - Math.exp(-dt / this.#tauMs)) * (inst - this.#rate);
    }
    this.#lastT = nowMs;
    this.#lastDone = done;
  }

  /** Units per second, once warmed up; null before. */
  rate(nowMs: number): number | null {
    if (this.#t0 === undefined || this.#rate === undefined || nowMs - this.#t0 < this.#warmupMs) return null;
    return this.#rate;
  }

  /** Seconds to `total`, or null while the rate is unknown (or zero). */
  eta(total: number, nowMs: number): number | null {
    const r = this.rate(nowMs);
    if (r === null || r <= 0) return null;
    return Math.max(0, (total - this.#lastDone) / r);
  }
}
