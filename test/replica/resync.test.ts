import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { tempDir, makeGroup, MiB, KiB } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

describe('suspension, resync base, restore', () => {
  const dir = tempDir();

  it('exports carry a resync base of the dirty regions; restores refuse the suspended window and succeed after the resync', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    const group = await openSiteGroup(g);
    const image = Buffer.alloc(4 * MiB);
    const write = async (off: number, len: number, fill: number): Promise<{ journaled: boolean; timestamp: bigint }> => {
      const r = await group.write('a', off, Buffer.alloc(len, fill));
      image.fill(fill, off, off + len);
      return r;
    };
    try {
      await exportTo(group, join(dir, 't'), { base: true });
      let i = 0;
      while ((await write((i * 96 * KiB) % (3 * MiB), 96 * KiB, (i % 250) + 1)).journaled) i++;
      const during = await write(3 * MiB + 4096, 8192, 0xee);
      expect(during.journaled).toBe(false);
      expect(group.state).toBe('suspended');
      // The export frees the journal; the group still diverts writes until the next write finds room.
      const first = await exportTo(group, join(dir, 't'));
      expect(first.base).toBeNull();
      expect((await write(0, 4096, 0x11)).journaled).toBe(true);
      expect(group.state).toBe('resync-pending');
      const second = await exportTo(group, join(dir, 't'));
      expect(second.base?.scope).toBe('resync');
      expect(group.state).toBe('active');
      const after = await write(8192, 4096, 0x22);
      await exportTo(group, join(dir, 't'));
      const imp = await importTapes(join(dir, 'rep'), [join(dir, 't')]);
      expect(imp.ok).toBe(true);
      // Inside the suspended window: refused. After the resync: the exact image.
      await expect(restoreReplica(join(dir, 'rep'), { point: { kind: 'until', ts: during.timestamp, exclusive: false }, targets: [{ path: join(dir, 'x.img') }] }))
        .rejects.toThrowError(/suspended/);
      await restoreReplica(join(dir, 'rep'), { point: { kind: 'until', ts: after.timestamp, exclusive: false }, targets: [{ path: join(dir, 'ok.img') }] });
      expect(readFileSync(join(dir, 'ok.img')).equals(image)).toBe(true);
    } finally {
      await group.close();
    }
  });
});
