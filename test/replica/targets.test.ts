import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openFileTarget, openSvolTarget, tmpPathFor } from '../../src/replica/targets.js';
import { SYNC_EVERY } from '../../src/io/files.js';
import { MiB, tempDir } from '../helpers.js';
import { failFirstDatasync, fileHandleProto } from '../sync-spies.js';
import { isOpenHere, openAtLockRelease } from '../lock-spies.js';

describe('restore targets', () => {
  const dir = tempDir();
  afterEach(() => vi.restoreAllMocks());

  it('a file target makes what it was given durable as it goes (a datasync once SYNC_EVERY bytes were written) and at finish', async () => {
    const sync = vi.spyOn(await fileHandleProto(dir), 'datasync');
    const size = 2 * SYNC_EVERY + 4 * MiB;
    const t = await openFileTarget('a', join(dir, 'a.img'), size, false);
    const chunk = Buffer.alloc(4 * MiB, 7);
    for (let off = 0; off < size; off += chunk.length) await t.write(off, chunk);
    // One at least (a second waits for the first to end: never two at once).
    const before = sync.mock.calls.length;
    expect(before).toBeGreaterThanOrEqual(1);
    await t.finish();
    expect(sync.mock.calls.length).toBe(before + 1);
    expect(readFileSync(tmpPathFor(join(dir, 'a.img'))).equals(Buffer.alloc(size, 7))).toBe(true);
  });

  it('a background datasync that fails fails the target\'s finish (what it was to make durable may be lost); abort removes the file', async () => {
    await failFirstDatasync(dir);
    const t = await openFileTarget('a', join(dir, 'a.img'), SYNC_EVERY + MiB, false);
    const chunk = Buffer.alloc(MiB, 1);
    for (let off = 0; off < SYNC_EVERY + MiB; off += MiB) await t.write(off, chunk);
    await expect(t.finish()).rejects.toThrow(/EIO/);
    await t.abort();
    expect(existsSync(tmpPathFor(join(dir, 'a.img')))).toBe(false);
  });

  /** openAtLockRelease, and the file closed once `fn` has run. */
  async function openAtRelease(path: string, fn: () => Promise<unknown>): Promise<boolean[]> {
    const seen = await openAtLockRelease(path, fn);
    expect(isOpenHere(path)).toBe(false);
    return seen;
  }

  it('an SVOL target keeps its file open until its lock (named by the file\'s inode) is released, after a restore, a failure, or a refusal', async () => {
    // Closed first, the file could be removed and its inode given to a new file, refused while this live process held the lock.
    const path = join(dir, 'svol', 'v.img');
    expect(await openAtRelease(path, async () => {
      const t = await openSvolTarget('v', path, MiB);
      await t.write(0, Buffer.alloc(4096, 1));
      await t.finish();
      await t.release();
    })).toEqual([true]);
    expect(await openAtRelease(path, async () => {
      const t = await openSvolTarget('v', path, MiB);
      await t.abort();
      await t.release();
    })).toEqual([true]);
    const odd = join(dir, 'svol', 'odd.img');
    writeFileSync(odd, Buffer.alloc(MiB + 512));
    expect(await openAtRelease(odd, async () => {
      await expect(openSvolTarget('v', odd, MiB)).rejects.toMatchObject({ code: 'TARGET_NOT_USABLE' });
    })).toEqual([true]);
  });
});
