import { describe, expect, it } from 'vitest';
import { SmoothedRate } from '../../src/core/smoothed-rate.js';

describe('smoothed progress rate', () => {
  it('shows nothing in the first second; bursts average out; the ETA follows the average', () => {
    const r = new SmoothedRate({ tauMs: 5000, warmupMs: 1000 });
    r.sample(0, 0);
    r.sample(500, 10); // a burst from cache: 50 000 units/s for 10 ms
    expect(r.rate(10)).toBeNull();
    expect(r.eta(10_000, 10)).toBeNull();
    // Then a steady 100 units/s, reported once a second in lumps.
    for (let t = 1000; t <= 30_000; t += 1000) r.sample(500 + (t / 1000) * 100, t);
    expect(r.rate(30_000)).toBeGreaterThan(95);
    expect(r.rate(30_000)).toBeLessThan(120);
    const eta = r.eta(10_000, 30_000) as number;
    expect(eta).toBeGreaterThan((10_000 - 3500) / 120);
    expect(eta).toBeLessThan((10_000 - 3500) / 95);
    // Lumpy reports (nothing for 4 s, then 4 s of work at once) move the ETA by less than the lump.
    const before = r.eta(20_000, 30_000) as number;
    r.sample(3500, 34_000);
    const stalled = r.eta(20_000, 34_000) as number;
    r.sample(3900, 34_100);
    const after = r.eta(20_000, 34_100) as number;
    expect(stalled).toBeGreaterThan(before);
    expect(Math.abs(after - before)).toBeLessThan(before * 0.5);
  });
});
