import { copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { Replica } from '../../src/replica/replica.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { MiB, makeGroup, tempDir } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';

/**
 * An import decides on a tape by its label, read first on its own, then reads
 * the whole tape. A file replaced in between (another group's tape 1 copied
 * over it) was stored and catalogued under the first label: the replica of
 * one group held another group's records, and restored them as its own.
 */
describe('a tape file replaced while it is imported', () => {
  const dir = tempDir();
  afterEach(() => vi.restoreAllMocks());

  async function tapeOf(name: string, fill: number): Promise<string> {
    const g = await makeGroup(join(dir, name), { a: 1 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    await group.write('a', 0, Buffer.alloc(64 * 1024, fill));
    await exportTo(group, join(dir, `${name}-tapes`), { base: true });
    await group.close();
    const [t] = readdirSync(join(dir, `${name}-tapes`)).filter((n) => n.endsWith('.tar.zst'));
    return join(dir, `${name}-tapes`, t!);
  }

  it('is refused: nothing of the other tape is stored under the label read first', async () => {
    const mine = await tapeOf('mine', 1);
    const other = await tapeOf('other', 2);
    const carried = join(dir, 'carried.tar.zst');
    copyFileSync(mine, carried);
    // Between the label and the whole read (the replica is opened in between), the file is replaced.
    const open = Replica.openOrCreate.bind(Replica);
    vi.spyOn(Replica, 'openOrCreate').mockImplementation(async (...args) => {
      copyFileSync(other, carried);
      return open(...args);
    });
    const rep = join(dir, 'rep');
    const r = await importTapes(rep, [carried]);
    expect(r.ok).toBe(false);
    expect(r.tapes).toHaveLength(1);
    expect(r.tapes[0]).toMatchObject({ outcome: 'refused', code: 'TAPE_DAMAGED', message: expect.stringContaining('changed while it was read') });
    vi.restoreAllMocks();
    const replica = await Replica.open(rep);
    try {
      expect(replica.catalog.tapes()).toEqual([]);
      expect(readdirSync(replica.tapesDir)).toEqual([]);
    } finally {
      await replica.close();
    }
  });
});
