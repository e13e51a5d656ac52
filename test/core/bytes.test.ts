import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { byteLength, crc32Bytes, joinBytes, piecesOf, sliceBytes, type Bytes } from '../../src/core/bytes.js';
import { dataCrc } from '../../src/core/record.js';

/** Bytes in one piece or cut into pieces at the given points. */
const bytesArb = fc.uint8Array({ maxLength: 300 }).chain((all) => fc.tuple(
  fc.constant(all),
  fc.oneof(fc.constant<number[] | null>(null), fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, all.length - 1) }), { maxLength: 8 })),
)).map(([all, cuts]): [Buffer, Bytes] => {
  const b = Buffer.from(all);
  if (cuts === null || b.length < 2) return [b, b];
  const at = [0, ...cuts.filter((c) => c < b.length).sort((x, y) => x - y), b.length];
  return [b, at.slice(1).map((end, i) => b.subarray(at[i], end))];
});

describe('bytes in pieces', () => {
  it('length, slices, join and CRC equal those of the joined bytes (property)', () => {
    fc.assert(fc.property(bytesArb, fc.nat(), fc.nat(), ([all, bytes], x, y) => {
      expect(byteLength(bytes)).toBe(all.length);
      expect(joinBytes(bytes).equals(all)).toBe(true);
      expect(crc32Bytes(bytes)).toBe(zlibCrc32(all));
      expect(dataCrc(bytes)).toBe(all.length === 0 ? 0 : zlibCrc32(all));
      const start = all.length === 0 ? 0 : x % (all.length + 1);
      const end = start + (all.length === 0 ? 0 : y % (all.length - start + 1));
      const s = sliceBytes(bytes, start, end);
      expect(byteLength(s)).toBe(end - start);
      expect(Buffer.from(joinBytes(s)).equals(all.subarray(start, end))).toBe(true);
      // Slices are views of the pieces: no byte is copied, and no piece of a slice is empty.
      for (const p of piecesOf(s)) expect(p.buffer).toBe(all.buffer);
      if (!(s instanceof Uint8Array)) expect(s.every((p) => p.length > 0)).toBe(true);
    }), { numRuns: 500 });
  });

  it('joins one piece without a copy and several with one', () => {
    const a = Buffer.from('abc');
    expect(joinBytes([a])).toBe(a);
    const u = new Uint8Array(a.buffer, a.byteOffset, 3);
    expect(joinBytes(u).buffer).toBe(a.buffer);
    const j = joinBytes([a, Buffer.from('def')]);
    expect(j.toString()).toBe('abcdef');
    expect(joinBytes([]).length).toBe(0);
  });
});
