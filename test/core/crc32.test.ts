import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CRC32_IMPLEMENTATION, crc32 } from '../../src/core/crc32.js';

describe('crc32', () => {
  it('gives the IEEE check value, whole and continued', () => {
    const b = Buffer.from('123456789');
    expect(crc32(b)).toBe(0xcbf43926);
    expect(crc32(b.subarray(3), crc32(b.subarray(0, 3)))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(new Uint8Array(0), 0x1234)).toBe(0x1234);
  });

  it('uses the folded binding on this platform, not the fallback', () => {
    // CI runs on linux-x64, where @node-rs/crc32 ships a prebuilt binary: a broken install must not pass unseen.
    if (process.platform === 'linux' && process.arch === 'x64') expect(CRC32_IMPLEMENTATION).toBe('node-rs');
    else expect(['node-rs', 'zlib']).toContain(CRC32_IMPLEMENTATION);
  });

  it('equals zlib on any bytes, any view, any starting value, split anywhere', () => {
    const pool = randomBytes(1 << 17);
    fc.assert(fc.property(
      fc.integer({ min: 0, max: pool.length }), fc.integer({ min: 0, max: pool.length }), fc.nat({ max: 0xffffffff }), fc.integer({ min: 0, max: 1 }),
      (a, b, seed, useSeed) => {
        const lo = Math.min(a, b);
        const view = pool.subarray(lo, Math.max(a, b));
        const cut = lo === 0 ? 0 : lo % (view.length + 1);
        const start = useSeed ? seed : 0;
        const want = zlibCrc32(view, start);
        expect(crc32(view, start)).toBe(want);
        expect(crc32(view.subarray(cut), crc32(view.subarray(0, cut), start))).toBe(want);
        // A plain Uint8Array over the same memory, at an odd offset into its buffer.
        expect(crc32(new Uint8Array(view.buffer, view.byteOffset, view.length), start)).toBe(want);
      },
    ), { numRuns: 400 });
  });

  it('equals zlib on whole journal-sized payloads', () => {
    for (const n of [255, 256, 257, 4096, 65_536, 1 << 20, (1 << 22) + 3]) {
      const b = randomBytes(n);
      expect(crc32(b), `${n} bytes`).toBe(zlibCrc32(b));
    }
  });
});
