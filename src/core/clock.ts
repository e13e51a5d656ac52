/** A step of the wall clock seen between two readings. */
export interface ClockStep {
  /** What the wall clock should have read, given the monotonic time that passed. */
  expected: bigint;
  /** What it read. */
  actual: bigint;
}

/** Steps backwards by more than this, or forwards by more than FORWARD_STEP, are reported. */
export const BACKWARD_STEP_NS = 100_000_000n; // 100 ms: far more than NTP slews or Date.now() resolution
export const FORWARD_STEP_NS = 60_000_000_000n; // a minute, as DESIGN.md settles

/**
 * The journal group's clock: wall-clock nanoseconds, strictly increasing from
 * one stamp to the next even when the wall clock steps back (invariant 1).
 * Readings are passed in, so the logic is pure and testable.
 */
export class MonotonicClock {
  #last: bigint;
  #prevWall: bigint | undefined;
  #prevMono: bigint | undefined;
  readonly #wall: () => bigint;
  readonly #mono: () => bigint;

  constructor(last: bigint, wall: () => bigint, mono: () => bigint) {
    this.#last = last;
    this.#wall = wall;
    this.#mono = mono;
  }

  /** The last stamp issued. */
  get last(): bigint {
    return this.#last;
  }

  /**
   * Issues the next stamp: max(wall clock, last + 1). Reports a step when the
   * wall clock moved against the monotonic clock by more than the thresholds.
   */
  next(): { timestamp: bigint; step?: ClockStep } {
    const wall = this.#wall();
    const mono = this.#mono();
    let step: ClockStep | undefined;
    if (this.#prevWall !== undefined && this.#prevMono !== undefined) {
      const expected = this.#prevWall + (mono - this.#prevMono);
      const drift = wall - expected;
      if (drift < -BACKWARD_STEP_NS || drift > FORWARD_STEP_NS) step = { expected, actual: wall };
    }
    this.#prevWall = wall;
    this.#prevMono = mono;
    const timestamp = wall > this.#last ? wall : this.#last + 1n;
    this.#last = timestamp;
    return step ? { timestamp, step } : { timestamp };
  }

  /** A stamp for things that take no sequence number (base records): never below the last one issued. */
  peek(): bigint {
    const wall = this.#wall();
    return wall > this.#last ? wall : this.#last;
  }
}

/**
 * A wall clock in nanoseconds: Date.now() gives milliseconds; the monotonic
 * clock fills in the part below the millisecond, re-anchored whenever the
 * estimate leaves the millisecond Date.now() reports (a step, or drift).
 */
export function systemWallClock(): () => bigint {
  let anchorWall = 0n;
  let anchorMono = 0n;
  return () => {
    const ms = BigInt(Date.now()) * 1_000_000n;
    const mono = process.hrtime.bigint();
    const est = anchorWall + (mono - anchorMono);
    if (est >= ms && est < ms + 1_000_000n) return est;
    anchorWall = ms;
    anchorMono = mono;
    return ms;
  };
}

export function systemMonoNs(): bigint {
  return process.hrtime.bigint();
}
