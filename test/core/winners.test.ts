import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SectorClaims } from '../../src/core/winners.js';

describe('sector claims (coalescing)', () => {
  it('newest-first claims rebuild exactly what an in-order replay writes (property, against a byte model)', () => {
    const size = 64 * 512 + 100;
    const write = fc.record({ s: fc.nat(64), n: fc.integer({ min: 1, max: 20 }), fill: fc.integer({ min: 1, max: 255 }) })
      .map(({ s, n, fill }) => ({ offset: s * 512, length: Math.min(n * 512, size - s * 512), fill }))
      .filter((w) => w.length > 0);
    fc.assert(fc.property(fc.array(write, { maxLength: 60 }), (writes) => {
      const model = new Uint8Array(size);
      for (const w of writes) model.fill(w.fill, w.offset, w.offset + w.length);
      const claims = new SectorClaims([size]);
      const out = new Uint8Array(size);
      let written = 0;
      for (let i = writes.length - 1; i >= 0; i--) {
        const w = writes[i]!;
        if (!claims.aligned(0, w.offset, w.length)) throw new Error('unaligned');
        for (const c of claims.claim(0, w.offset, w.length)) {
          if (c.start - c.delta !== w.offset) throw new Error('delta');
          out.fill(w.fill, c.start, c.end);
          written += c.end - c.start;
        }
      }
      expect(Buffer.from(out).equals(Buffer.from(model))).toBe(true);
      // Each byte written at most once.
      expect(written).toBeLessThanOrEqual(size);
    }), { numRuns: 200 });
  });

  it('knows which ranges it can claim', () => {
    const c = new SectorClaims([1000]);
    expect(c.aligned(0, 0, 512)).toBe(true);
    expect(c.aligned(0, 512, 488)).toBe(true); // ends at the volume's end
    expect(c.aligned(0, 100, 512)).toBe(false);
    expect(c.aligned(0, 0, 100)).toBe(false);
  });
});
