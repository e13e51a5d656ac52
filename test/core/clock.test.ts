import { describe, expect, it } from 'vitest';
import { MonotonicClock } from '../../src/core/clock.js';

function fakeClocks(): { wall: bigint; mono: bigint; clock: MonotonicClock } {
  const s = { wall: 1_000_000_000_000n, mono: 0n, clock: undefined as unknown as MonotonicClock };
  s.clock = new MonotonicClock(0n, () => s.wall, () => s.mono);
  return s;
}

describe('monotonic clock', () => {
  it('follows the wall clock and never repeats a stamp', () => {
    const s = fakeClocks();
    const a = s.clock.next().timestamp;
    const b = s.clock.next().timestamp;
    expect(a).toBe(s.wall);
    expect(b).toBe(a + 1n);
    s.wall += 1000n;
    s.mono += 1000n;
    expect(s.clock.next().timestamp).toBe(s.wall);
  });

  it('never goes back when the wall clock steps back, and reports the step', () => {
    const s = fakeClocks();
    const a = s.clock.next().timestamp;
    s.wall -= 3_600_000_000_000n; // an hour back
    s.mono += 10n;
    const r = s.clock.next();
    expect(r.timestamp).toBe(a + 1n);
    expect(r.step?.actual).toBe(s.wall);
    // Later stamps stay above the last one until the wall clock catches up.
    s.mono += 10n;
    s.wall += 10n;
    const r2 = s.clock.next();
    expect(r2.step).toBeUndefined();
    expect(r2.timestamp).toBe(a + 2n);
  });

  it('reports a forward step of more than a minute but not elapsed time', () => {
    const s = fakeClocks();
    s.clock.next();
    s.wall += 120_000_000_000n;
    s.mono += 120_000_000_000n; // two minutes really passed
    expect(s.clock.next().step).toBeUndefined();
    s.wall += 61_000_000_000n; // the clock jumped
    s.mono += 1_000n;
    expect(s.clock.next().step).toBeDefined();
  });

  it('starts above the last stamp it is given', () => {
    const clock = new MonotonicClock(5_000n, () => 10n, () => 0n);
    expect(clock.next().timestamp).toBe(5_001n);
    expect(clock.peek()).toBe(5_001n);
  });
});
