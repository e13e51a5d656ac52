import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fileLeavesOnPool } from '../../src/replica/prove.js';
import { digestOfLeaves, digestVolume, leafHasher } from '../../src/core/volume-digest.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { KiB, MiB, tempDir } from '../helpers.js';

// A restore's proof reads its targets back on the worker pool: runs of chunks read and hashed side by side.
// What it computes must be what a digest over the same bytes in memory computes.

describe('the proof reader (leaves on the worker pool)', () => {
  const dir = tempDir();
  const pool = new FramePool({ threads: 2 });
  afterAll(() => pool.close());
  let n = 0;

  /** The digest over `content` in memory, zeros past its end and in chunks `untouched` vouches for. */
  async function inMemory(content: Buffer, size: number, chunkSize: number, untouched?: (o: number, l: number) => boolean): Promise<string> {
    const hash = await leafHasher();
    return (await digestVolume('v', size, chunkSize, hash, async (o, l) => {
      const b = Buffer.alloc(l);
      if (o < content.length) content.copy(b, 0, o, Math.min(content.length, o + l));
      return b;
    }, untouched)).root;
  }

  async function onPool(path: string, size: number, chunkSize: number, untouched?: (o: number, l: number) => boolean): Promise<string> {
    const r = await fileLeavesOnPool(pool, 'v', path, untouched);
    try {
      return digestOfLeaves('v', size, chunkSize, await r.leaves(size, chunkSize)).root;
    } finally {
      await r.close();
    }
  }

  it('computes what a digest over the bytes in memory does: any size, chunk size and untouched chunks (hashed as zeros, whatever the file holds there), a file shorter than the volume (property)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 300 * KiB }), fc.integer({ min: 0, max: 8 * KiB }), fc.integer({ min: 1, max: 64 }), fc.option(fc.integer({ min: 2, max: 5 })),
      async (fileSize, beyond, sectors, every) => {
        const path = join(dir, `f${n++}`);
        const content = randomBytes(fileSize);
        writeFileSync(path, content);
        const chunkSize = sectors * 512;
        const size = fileSize + beyond;
        const untouched = every === null ? undefined : (o: number): boolean => (o / chunkSize) % every === 1;
        expect(await onPool(path, size, chunkSize, untouched)).toBe(await inMemory(content, size, chunkSize, untouched));
      },
    ), { numRuns: 60 });
  });

  it('splits a large file into jobs of 64 MiB and puts their leaves back in chunk order', async () => {
    const path = join(dir, 'large');
    const size = 160 * MiB + 4 * KiB;
    const fd = openSync(path, 'w');
    const content = Buffer.alloc(size);
    try {
      // A sparse file with data here and there: three jobs of four 16 MiB chunks, the last one short.
      for (const at of [0, 17 * MiB + 3, 70 * MiB, 130 * MiB + 511, 160 * MiB]) {
        const piece = randomBytes(4 * KiB);
        writeSync(fd, piece, 0, piece.length, at);
        piece.copy(content, at);
      }
    } finally {
      closeSync(fd);
    }
    expect(await onPool(path, size, 16 * MiB)).toBe(await inMemory(content, size, 16 * MiB));
  });

  it('a read that fails fails the proof with the system\'s error, naming the file', async () => {
    // A directory opens read-only, and every read of it fails (EISDIR).
    const r = await fileLeavesOnPool(pool, 'v', dir);
    try {
      await expect(r.leaves(256 * MiB, 64 * KiB)).rejects.toMatchObject({ code: 'EISDIR', path: dir });
    } finally {
      await r.close();
    }
  });
});
