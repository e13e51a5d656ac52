import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExtentMap, ZERO_SOURCE } from '../../src/core/extent-map.js';

/**
 * The extent map against the in-memory model: records replayed in order onto
 * an array of "which record holds this byte" must equal the map built by
 * claiming the same records newest first, byte for byte, at any granularity.
 */
describe('extent map (newest-first claims)', () => {
  const record = (size: number) => fc.record({ offset: fc.nat(size - 1), length: fc.integer({ min: 1, max: size }), zero: fc.boolean(), from: fc.nat(1 << 20) });

  it('equals an in-order replay onto a byte model (unaligned records, zeros, many chunks)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5000 }).chain((size) => fc.tuple(fc.constant(size), fc.array(record(size), { maxLength: 300 }), fc.constantFrom(2, 3, 8, 1024))), ([size, records, chunk]) => {
      // Model: per byte, the record index that wrote it last (-1 never written), and its payload offset.
      const who = new Int32Array(size).fill(-1);
      const at = new Float64Array(size);
      records.forEach((r, k) => {
        for (let b = r.offset; b < Math.min(size, r.offset + r.length); b++) {
          who[b] = k;
          at[b] = r.from + (b - r.offset);
        }
      });
      const map = new ExtentMap(size, chunk);
      let won = 0;
      for (let k = records.length - 1; k >= 0; k--) {
        const r = records[k]!;
        won += map.claim(r.offset, r.offset + r.length, r.zero ? ZERO_SOURCE : k, r.from);
      }
      const got = new Int32Array(size).fill(-1);
      const gotAt = new Float64Array(size);
      let last = 0;
      for (const x of map.extents(0, size)) {
        expect(x.start).toBeGreaterThanOrEqual(last);
        expect(x.end).toBeGreaterThan(x.start);
        last = x.end;
        for (let b = x.start; b < x.end; b++) {
          got[b] = x.source === ZERO_SOURCE ? -2 : x.source;
          gotAt[b] = x.from + (b - x.start);
        }
      }
      let written = 0;
      for (let b = 0; b < size; b++) {
        const k = who[b]!;
        const want = k < 0 ? -1 : records[k]!.zero ? -2 : k;
        if (got[b] !== want) throw new Error(`byte ${b}: map says ${got[b]}, replay ${want}`);
        if (want >= 0 && gotAt[b] !== at[b]) throw new Error(`byte ${b}: from ${gotAt[b]}, replay ${at[b]}`);
        if (k >= 0) written++;
      }
      // Each byte is won once, by its last writer.
      expect(won).toBe(written);
      // A range is covered when every byte of it was written (what a restore's proof takes for final).
      for (const [s0, e0] of [[0, size], [Math.floor(size / 4), Math.floor(size / 2) + 1], [size - 1, size], [Math.floor(size / 3), Math.floor(size / 3) + 64]] as const) {
        let all = true;
        for (let b = s0; b < Math.min(e0, size); b++) if (who[b]! < 0) all = false;
        if (map.covers(s0, e0) !== all) throw new Error(`covers(${s0}, ${e0}) is ${!all}, the replay says ${all}`);
      }
      // A window anywhere returns exactly the extents that overlap it.
      const w0 = Math.floor(size / 3);
      const ws = [...map.extents(w0, 7)];
      for (const x of ws) expect(x.end > w0 && x.start < w0 + 7).toBe(true);
    }), { numRuns: 300 });
  });

  it('splits its chunks: 20 000 disjoint claims stay sorted and findable, zero runs merge', () => {
    const size = 4 * 20_000 * 512;
    const map = new ExtentMap(size);
    // Odd slots with data, newest first from the end; then one zero record over everything.
    for (let k = 20_000 - 1; k >= 0; k--) map.claim((2 * k + 1) * 2 * 512, (2 * k + 2) * 2 * 512, k, 0);
    expect(map.count).toBe(20_000);
    map.claim(0, size, ZERO_SOURCE, 0);
    expect(map.count).toBe(40_000);
    const all = [...map.extents(0, size)];
    expect(all.map((x) => x.start)).toEqual([...all.map((x) => x.start)].sort((a, b) => a - b));
    expect(all.reduce((n, x) => n + x.end - x.start, 0)).toBe(size);
    const mid = [...map.extents(20_001 * 1024 + 10, 1)];
    expect(mid).toEqual([{ start: 20_001 * 1024, end: 20_002 * 1024, source: 10_000, from: 0 }]);
    // Zeros claimed next to zeros are one extent.
    const z = new ExtentMap(1 << 20);
    for (let k = 255; k >= 0; k--) z.claim(k * 4096, (k + 1) * 4096, ZERO_SOURCE, 0);
    expect(z.count).toBe(1);
  });
});
