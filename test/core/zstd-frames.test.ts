import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FrameCompressor } from '../../src/tape/zstd.js';
import { scanFrame, scanFrameAcross } from '../../src/core/zstd-frames.js';

describe('zstd frame scanning', () => {
  const compressor = new FrameCompressor(1);
  /** Real frames (content size declared, checksummed) of incompressible, compressible and empty content, and a skippable frame. */
  const frames = [randomBytes(300_000), Buffer.alloc(1_000_000, 7), Buffer.alloc(0), randomBytes(200)].map((c) => Buffer.from(compressor.compress(c)));
  const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0]), Buffer.from('hello')]);
  const stream = Buffer.concat([...frames, skippable, Buffer.from('not a frame at all')]);

  it('finds each frame\'s length and declared content size', () => {
    let off = 0;
    for (const [i, f] of frames.entries()) {
      expect(scanFrame(stream, off)).toEqual({ kind: 'frame', length: f.length, contentSize: [300_000, 1_000_000, 0, 200][i] });
      // Any shorter prefix needs more.
      for (const cut of [0, 3, 4, 10, f.length - 1]) expect(scanFrame(stream.subarray(0, off + cut), off)).toEqual({ kind: 'need-more' });
      off += f.length;
    }
    expect(scanFrame(stream, off)).toEqual({ kind: 'frame', length: 13, contentSize: 0 });
    expect(scanFrame(stream, off + 13)).toMatchObject({ kind: 'invalid', why: expect.stringMatching(/no zstd frame magic/) });
  });

  it('across two buffers, whatever the split, it says what it says of the two joined (property)', () => {
    const starts = frames.reduce<number[]>((a, f) => [...a, (a.at(-1) ?? 0) + f.length], [0]);
    fc.assert(fc.property(fc.constantFrom(...starts), fc.nat(), fc.nat(), (start, splitSeed, endSeed) => {
      const end = start + (endSeed % (stream.length - start + 1));
      const whole = stream.subarray(start, end);
      const split = splitSeed % (whole.length + 1);
      expect(scanFrameAcross(whole.subarray(0, split), whole.subarray(split))).toEqual(scanFrame(whole, 0));
    }), { numRuns: 2000 });
  });
});
