import { randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { fileBytes } from '../../src/replica/prove.js';
import { digestVolume, leafHasher } from '../../src/core/volume-digest.js';
import { KiB, tempDir } from '../helpers.js';

// The proof's reader reads the next chunk while the caller hashes this one. What it hands out must hold the
// file's bytes (zeros past its end) until the next read, whatever the caller asks next.

describe('the proof reader', () => {
  const dir = tempDir();
  let n = 0;

  it('gives the bytes asked for, and leaves what it gave alone until the next read (property)', async () => {
    const reads = fc.array(fc.record({ skip: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -40 * KiB, max: 40 * KiB })), length: fc.oneof(fc.constant(16 * KiB), fc.integer({ min: 1, max: 40 * KiB })), wait: fc.boolean() }), { minLength: 1, maxLength: 40 });
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 200 * KiB }), reads, async (size, plan) => {
      const path = join(dir, `f${n++}`);
      const content = randomBytes(size);
      writeFileSync(path, content);
      const want = (off: number, len: number): Buffer => {
        const b = Buffer.alloc(len);
        if (off < size) content.copy(b, 0, off, Math.min(size, off + len));
        return b;
      };
      const r = await fileBytes('v', path);
      try {
        let at = 0;
        for (const { skip, length, wait } of plan) {
          at = Math.max(0, at + skip);
          const got = await r.read(at, length);
          expect(Buffer.from(got).equals(want(at, length))).toBe(true);
          // The read ahead runs now (and, when the next read comes at once and is not the one read ahead,
          // still runs during it): it must not be writing into what the caller holds.
          if (wait) {
            for (let i = 0; i < 4; i++) await tick();
            await fsp.stat(path);
            expect(Buffer.from(got).equals(want(at, length))).toBe(true);
          }
          at += length;
        }
      } finally {
        await r.close();
      }
    }), { numRuns: 150 });
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('a read of anything but the chunk read ahead waits for that read to end first', async () => {
    const path = join(dir, 'slow');
    const content = randomBytes(64 * KiB);
    writeFileSync(path, content);
    // The read ahead (the second read the reader issues) is made slow; the read asked for next is not.
    // It goes on once a third read has been issued (a reader that does not wait for it), or after many turns
    // of the event loop (one that does).
    const real = await fsp.open(path, 'r');
    let calls = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((res) => { open = res; });
    const turns = async (): Promise<void> => {
      for (let i = 0; i < 50; i++) await tick();
    };
    let slowDone: Promise<unknown> | undefined;
    vi.spyOn(fsp, 'open').mockResolvedValueOnce({
      read: (b: Buffer, off: number, len: number, pos: number) => {
        const call = ++calls;
        if (call === 3) open();
        const r = (async () => {
          if (call === 2) await Promise.race([gate, turns()]);
          return real.read(b, off, len, pos);
        })();
        if (call === 2) slowDone = r;
        return r;
      },
      close: () => real.close(),
    } as unknown as fsp.FileHandle);
    const r = await fileBytes('v', path);
    try {
      expect(Buffer.from(await r.read(0, 16 * KiB)).equals(content.subarray(0, 16 * KiB))).toBe(true);
      const got = await r.read(40 * KiB, 16 * KiB); // not the chunk read ahead (16 KiB)
      await slowDone;
      expect(Buffer.from(got).equals(content.subarray(40 * KiB, 56 * KiB))).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('reads ahead only chunks the proof will read: none that are known to be zeros', async () => {
    const path = join(dir, 'sparse');
    const chunk = 16 * KiB;
    writeFileSync(path, randomBytes(40 * chunk));
    const real = await fsp.open(path, 'r');
    const readAt: number[] = [];
    vi.spyOn(fsp, 'open').mockResolvedValueOnce({
      read: (b: Buffer, off: number, len: number, pos: number) => {
        readAt.push(pos);
        return real.read(b, off, len, pos);
      },
      close: () => real.close(),
    } as unknown as fsp.FileHandle);
    // One chunk in ten written, as a restored volume a tenth written; the rest holes (zeros, not read).
    const untouched = (o: number): boolean => (o / chunk) % 10 !== 0;
    const r = await fileBytes('v', path, untouched);
    try {
      const hash = await leafHasher();
      await digestVolume('v', 40 * chunk, chunk, hash, (o, l) => r.read(o, l), untouched);
    } finally {
      await r.close();
    }
    expect(readAt.filter((p) => p < 40 * chunk && untouched(p))).toEqual([]);
    expect(readAt.filter((p) => p < 40 * chunk)).toEqual([0, 10, 20, 30].map((c) => c * chunk));
  });

  it('digests a file as a digest over its bytes in memory does', async () => {
    const hash = await leafHasher();
    for (const size of [0, 1, 64 * KiB - 1, 64 * KiB, 300 * KiB + 7]) {
      const path = join(dir, `d${size}`);
      const content = randomBytes(size);
      writeFileSync(path, content);
      const r = await fileBytes('v', path);
      try {
        const fromFile = await digestVolume('v', size + 3 * KiB, 16 * KiB, hash, (o, l) => r.read(o, l), (o) => o === 32 * KiB);
        const fromMemory = await digestVolume('v', size + 3 * KiB, 16 * KiB, hash, async (o, l) => {
          const b = Buffer.alloc(l);
          if (o < size) content.copy(b, 0, o, Math.min(size, o + l));
          return b;
        }, (o) => o === 32 * KiB);
        expect(fromFile.root).toBe(fromMemory.root);
      } finally {
        await r.close();
      }
    }
  });
});
