import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createGroup } from '../../src/journal/group-create.js';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { isJshipError } from '../../src/core/errors.js';
import { KiB, MiB, mountTmpfs, tempDir, unmount } from '../helpers.js';

describe('a PVOL on a full file system', () => {
  const dir = tempDir();
  const mounts: string[] = [];
  afterEach(() => {
    for (const m of mounts.splice(0)) unmount(m);
  });

  it('a write is acknowledged and journaled, or refused and in neither; after the first PVOL failure the group says why and takes no more', async () => {
    const fs = join(dir, 'fs');
    mountTmpfs(fs, '1m');
    mounts.push(fs);
    const g = join(dir, 'group');
    // The journal is on a file system with room; the PVOL (sparse, 8 MiB) on one with 1 MiB.
    await createGroup(g, { volumes: [{ name: 'a', extents: [{ path: join(fs, 'a.img'), size: 8 * MiB }] }], journalSize: 16 * MiB, chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    const ok: number[] = [];
    let refused: unknown;
    for (let i = 0; i < 64; i++) {
      try {
        await group.write('a', i * 128 * KiB, Buffer.alloc(128 * KiB, i + 1));
        ok.push(i);
      } catch (e) {
        refused = e;
        break;
      }
    }
    expect(isJshipError(refused, 'IO'), String(refused)).toBe(true);
    expect((refused as Error).message).toMatch(/takes no more writes .*writing PVOL "a" failed/);
    expect(ok.length).toBeGreaterThan(0);
    expect(ok.length).toBeLessThan(64);
    await group.close();
    // Room again: the reopened group applies the journal; the journal holds exactly the acknowledged writes.
    mountTmpfs(fs, '16m', true);
    const again = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      const recs = [];
      for await (const r of again.records()) recs.push(r.header);
      expect(recs.map((h) => h.offset)).toEqual(ok.map((i) => i * 128 * KiB));
      for (const i of ok) expect((await again.read('a', i * 128 * KiB, 128 * KiB)).every((b) => b === i + 1), `write ${i}`).toBe(true);
      expect((await again.read('a', ok.length * 128 * KiB, 128 * KiB)).every((b) => b === 0)).toBe(true);
    } finally {
      await again.close();
    }
  });
});
