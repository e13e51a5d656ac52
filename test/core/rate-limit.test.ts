import { describe, expect, it } from 'vitest';
import { RateLimit } from '../../src/core/rate-limit.js';

const S = 1_000_000_000n;

/** A sender that sends `piece` bytes whenever the limit lets it, for `seconds` of simulated time; returns bytes sent per second. */
function simulate(limit: RateLimit, piece: number, seconds: number, onSecond?: (s: number) => void): number[] {
  const perSecond = Array.from({ length: seconds }, () => 0);
  let now = 0n;
  while (now < BigInt(seconds) * S) {
    const wait = limit.take(piece, now);
    now += wait;
    const sec = Number(now / S);
    if (sec >= seconds) break;
    perSecond[sec]! += piece;
    if (onSecond && wait > 0n) onSecond(sec);
  }
  return perSecond;
}

describe('RateLimit (bandwidth limit, pure)', () => {
  it('holds the rate within 10 % over any 10 s window, for small and big pieces', () => {
    for (const piece of [4096, 256 * 1024, 4 * 1024 * 1024]) {
      const rate = 20 * 1024 * 1024;
      const sent = simulate(new RateLimit(rate), piece, 30);
      for (let from = 0; from + 10 <= 30; from++) {
        const window = sent.slice(from, from + 10).reduce((a, b) => a + b, 0);
        expect(window / 10 / rate, `piece ${piece}, window from ${from} s`).toBeGreaterThan(0.9);
        expect(window / 10 / rate, `piece ${piece}, window from ${from} s`).toBeLessThan(1.1);
      }
    }
  });

  it('a new rate applies from now on; null is no limit; a bad rate is refused', () => {
    const limit = new RateLimit(1024 * 1024);
    let now = 0n;
    let sent = 0;
    while (now < 10n * S) { now += limit.take(64 * 1024, now); sent += 64 * 1024; }
    limit.setRate(4 * 1024 * 1024);
    const before = sent;
    while (now < 20n * S) { now += limit.take(64 * 1024, now); sent += 64 * 1024; }
    expect((sent - before) / 10 / (4 * 1024 * 1024)).toBeGreaterThan(0.9);
    limit.setRate(null);
    expect(limit.take(1 << 30, now)).toBe(0n);
    expect(() => limit.setRate(0)).toThrow(RangeError);
    expect(() => new RateLimit(-5)).toThrow(RangeError);
  });
});
