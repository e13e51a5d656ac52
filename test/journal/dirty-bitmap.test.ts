import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirtyBitmap } from '../../src/journal/dirty-bitmap.js';
import { KiB, MiB, tempDir } from '../helpers.js';

describe('dirty bitmap (dirty.bitmap, epoch.bitmap)', () => {
  const dir = tempDir();

  it('a volume that grew (jship scan adopts a grown file): the bitmap opens, keeps its bits, and every chunk it grew by is dirty', async () => {
    const path = join(dir, 'grow.bitmap');
    let bm = await DirtyBitmap.open(path, 64 * KiB, [1 * MiB, 100 * KiB]);
    bm.set(0, 3, true);
    bm.set(1, 0, true);
    await bm.persist();
    await bm.close();
    // Volume 0 grew by 1 MiB, volume 1 from 100 KiB (a partial second chunk) to 200 KiB.
    bm = await DirtyBitmap.open(path, 64 * KiB, [2 * MiB, 200 * KiB]);
    expect([...bm.dirtyChunks(0)]).toEqual([3, ...Array.from({ length: 16 }, (_v, i) => 16 + i)]);
    expect([...bm.dirtyChunks(1)]).toEqual([0, 1, 2, 3]);
    await bm.close();
    // Opened again at the same sizes: the same bits (the file was rewritten in the new layout).
    bm = await DirtyBitmap.open(path, 64 * KiB, [2 * MiB, 200 * KiB]);
    expect(bm.dirtyCount()).toBe(1 + 16 + 4);
    await bm.close();
  });

  it('refuses a shrink, another chunk size, another volume count, and a damaged header', async () => {
    const path = join(dir, 'refuse.bitmap');
    const bm = await DirtyBitmap.open(path, 64 * KiB, [1 * MiB]);
    await bm.close();
    for (const [chunk, sizes] of [[64 * KiB, [512 * KiB]], [128 * KiB, [1 * MiB]], [64 * KiB, [1 * MiB, 1 * MiB]]] as const) {
      await expect(DirtyBitmap.open(path, chunk, [...sizes])).rejects.toMatchObject({ code: 'BITMAP_DAMAGED' });
    }
    const b = readFileSync(path);
    b[9] = (b[9] as number) ^ 1;
    writeFileSync(path, b);
    await expect(DirtyBitmap.open(path, 64 * KiB, [1 * MiB])).rejects.toMatchObject({ code: 'BITMAP_DAMAGED' });
  });
});
