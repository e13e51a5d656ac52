import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RestoreProof } from '../../src/replica/prove.js';
import { DIGEST_ALGORITHM, digestVolume, leafHasher, type PointDigest } from '../../src/core/volume-digest.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { KiB, MiB, tempDir } from '../helpers.js';

// A restore's proof reads its targets back on the worker pool: regions of chunks read and hashed side by side,
// each once the restore has written all it will write there, in whatever order. What it computes must be what a
// digest over the same bytes in memory computes.

/** A digest of one volume `v` whose root nothing matches: the proof's `got` is what it computed. */
const digestOf = (size: number, chunkSize: number): PointDigest => ({ algorithm: DIGEST_ALGORITHM, seq: '1', kind: 'restore-point', name: 'm', chunkSize, volumes: [{ name: 'v', size, root: '0'.repeat(64) }], root: '0'.repeat(64) });

describe('the restore proof (leaves on the worker pool)', () => {
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

  /** The root the proof computes; `order`: regions told final first (each index taken modulo their count, repeats allowed), the rest at the end. */
  async function onPool(path: string, size: number, chunkSize: number, untouched?: (o: number, l: number) => boolean, order: number[] = []): Promise<string> {
    const proof = await RestoreProof.open(pool, digestOf(size, chunkSize), [undefined, { name: 'v', path, untouched }]);
    try {
      const regions = Math.max(1, Math.ceil(size / proof.regionBytes));
      for (const r of order) proof.final(1, r % regions);
      // Told of regions past the end, or of a volume not restored: nothing to read.
      proof.final(1, regions + 1);
      proof.final(0, 0);
      return (await proof.result()).volumes[0]!.got;
    } finally {
      await proof.close();
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

  it('splits a large file into regions of 64 MiB and puts their leaves back in chunk order, whichever region is read first', async () => {
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
    const want = await inMemory(content, size, 16 * MiB);
    expect(await onPool(path, size, 16 * MiB)).toBe(want);
    expect(await onPool(path, size, 16 * MiB, undefined, [2, 0])).toBe(want);
    expect(await onPool(path, size, 16 * MiB, undefined, [1, 1, 2, 0])).toBe(want);
  });

  it('reads a final region once more than its backlog waits (before its bytes leave the page cache), the rest at the end', async () => {
    const path = join(dir, 'backlog');
    const chunkSize = 16 * MiB;
    const size = 192 * MiB;
    const before = randomBytes(size);
    writeFileSync(path, before);
    const after = Buffer.from(before);
    after.fill(7, 0, 64 * MiB);
    const want = { before: await inMemory(before, size, chunkSize), after: await inMemory(after, size, chunkSize) };
    // Regions 0 and 1 told final, then region 0 changes on disk (a proof that reads it later sees the change).
    for (const [backlog, read] of [[0, 'before'], [64 * MiB, 'before'], [128 * MiB, 'after']] as const) {
      writeFileSync(path, before);
      const proof = await RestoreProof.open(pool, digestOf(size, chunkSize), [{ name: 'v', path }], backlog);
      try {
        expect(proof.regionBytes).toBe(64 * MiB);
        proof.final(0, 0);
        proof.final(0, 1);
        await proof.settled();
        writeFileSync(path, after);
        expect((await proof.result()).volumes[0]!.got, `backlog ${backlog}`).toBe(want[read]);
      } finally {
        await proof.close();
      }
    }
  });

  it('a read that fails fails the proof with the system\'s error, naming the file', async () => {
    // A directory opens read-only, and every read of it fails (EISDIR).
    const proof = await RestoreProof.open(pool, digestOf(256 * MiB, 64 * KiB), [{ name: 'v', path: dir }]);
    try {
      proof.final(0, 1);
      await expect(proof.result()).rejects.toMatchObject({ code: 'EISDIR', path: dir });
    } finally {
      await proof.close();
    }
  });
});
