import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TouchedMap } from '../../src/core/touched.js';

describe('TouchedMap', () => {
  it('never calls a written byte untouched, and calls a range untouched when no granule of it was written (property, against a byte model)', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 1 << 16 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 9000 })), { maxLength: 12 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 9000 })), { minLength: 1, maxLength: 12 }),
      (size, writes, queries) => {
        const m = new TouchedMap(size);
        const model = new Uint8Array(size);
        for (const [o, l] of writes) {
          const off = o % size;
          const len = Math.min(l, size - off);
          m.touch(off, len);
          model.fill(1, off, off + len);
        }
        for (const [o, l] of queries) {
          const off = o % size;
          const len = Math.max(1, Math.min(l, size - off));
          const written = model.subarray(off, off + len).some((b) => b === 1);
          if (written) expect(m.untouched(off, len)).toBe(false);
          // Untouched at the granule's grain: a range whose granules no write reached.
          const g = m.granule;
          const grains = model.subarray(Math.floor(off / g) * g, Math.min(size, Math.ceil((off + len) / g) * g));
          expect(m.untouched(off, len)).toBe(!grains.some((b) => b === 1));
        }
      },
    ));
  });

  it('stays within 2^20 granules for any size; reset forgets every write', () => {
    const big = new TouchedMap(16 * 2 ** 40);
    expect(Math.ceil(big.size / big.granule)).toBeLessThanOrEqual(2 ** 20);
    big.touch(2 ** 40, 1);
    expect(big.untouched(2 ** 40, 4096)).toBe(false);
    expect(big.untouched(0, 2 ** 30)).toBe(true);
    big.reset();
    expect(big.untouched(2 ** 40, 4096)).toBe(true);
  });
});
