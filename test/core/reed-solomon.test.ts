import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MAX_SHARDS, encodeParity, reconstructData } from '../../src/core/reed-solomon.js';

describe('Reed-Solomon over GF(2^8)', () => {
  it('golden bytes: 2 data shards, 2 parity shards (fixes the matrix: a change would make old tapes unrepairable)', () => {
    const p = encodeParity([Buffer.from([1, 2, 3, 4]), Buffer.from([5, 6, 7, 8])], 4, 2);
    expect(p.map((b) => b.toString('hex'))).toMatchInlineSnapshot(`
      [
        "090a0b1c",
        "0d0e0f10",
      ]
    `);
  });

  it('golden: 20 data shards and 3 parity shards of 97 bytes are those reed-solomon-erasure (Rust, the same construction) computes', () => {
    // The SHA-256 of the three parity shards, as @subspace/reed-solomon-erasure.wasm 0.2.5's encode gave them for these bytes.
    const data = Array.from({ length: 20 }, (_, j) => Buffer.from(Array.from({ length: 97 }, (_, i) => ((j * 97 + i) * 31 + 7) & 255)));
    expect(createHash('sha256').update(Buffer.concat(encodeParity(data, 97, 3))).digest('hex')).toBe('a0353841ba68fd1105c081c3927bada83f79f0550a74d58cb31ab740dad41ed1');
  });

  it('any k of the k + m shards give back the data, shorter shards padded with zeros (property)', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 64 }), fc.integer(),
      (k, m, shardBytes, seed) => {
        let x = seed >>> 0;
        const rnd = (n: number): number => {
          x = (x * 1103515245 + 12345) >>> 0;
          return x % n;
        };
        const data = Array.from({ length: k }, () => Buffer.from(Array.from({ length: 1 + rnd(shardBytes) }, () => rnd(256))));
        const parity = encodeParity(data, shardBytes, m);
        expect(parity).toHaveLength(m);
        // Lose up to m shards, anywhere.
        const all: Array<Buffer | null> = [...data, ...parity];
        const lose = Math.min(m, rnd(m + 1));
        for (let i = 0; i < lose; i++) all[rnd(k + m)] = null;
        const got = reconstructData(all.slice(0, k), all.slice(k), shardBytes);
        expect(got).not.toBeNull();
        got!.forEach((g, i) => {
          const want = Buffer.alloc(shardBytes);
          data[i]!.copy(want);
          expect(g.equals(want)).toBe(true);
        });
      },
    ), { numRuns: 300 });
  });

  it('fewer than k shards: null; bad counts are refused', () => {
    const data = [Buffer.from([1]), Buffer.from([2]), Buffer.from([3])];
    const parity = encodeParity(data, 1, 1);
    expect(reconstructData([null, null, data[2]!], parity, 1)).toBeNull();
    expect(() => encodeParity(data, 1, 0)).toThrow(/parity/);
    expect(() => encodeParity(Array.from({ length: MAX_SHARDS }, () => Buffer.alloc(1)), 1, 1)).toThrow(/at most 256/);
  });
});
