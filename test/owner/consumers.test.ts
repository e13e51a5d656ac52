import { describe, expect, it } from 'vitest';
import { JournalGroup, type JournalConsumer } from '../../src/journal/journal-group.js';
import { SITE_CONSUMERS, openSiteGroup } from '../../src/owner/consumers.js';
import { tempDir, makeGroup, KiB, MiB } from '../helpers.js';

/** A consumer whose secured position the test sets; counts how many of its reads overlap. */
function consumer(name: string, at: bigint | null): JournalConsumer & { at: bigint | null; gate: Promise<void> | null; overlap: number } {
  let reading = 0;
  const c = {
    name,
    at,
    gate: null as Promise<void> | null,
    overlap: 0,
    async secured(): Promise<bigint | null> {
      reading++;
      c.overlap = Math.max(c.overlap, reading);
      try {
        if (c.gate) await c.gate;
        return c.at;
      } finally {
        reading--;
      }
    },
  };
  return c;
}

describe('journal consumers (what may be purged)', () => {
  const dir = tempDir();

  it('purges to the smallest position secured; a consumer that pins nothing is left out; none pinning purges nothing; never past the last record', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const tapes = consumer('tapes', null);
    const link = consumer('link', null);
    const group = await JournalGroup.open(g, { consumers: [tapes, link], checkpointIntervalMs: 0 });
    try {
      for (let i = 0; i < 10; i++) await group.write('a', i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1));
      expect(await group.purgeSecured()).toBe(1n);
      tapes.at = 7n;
      link.at = 4n;
      expect(await group.purgeSecured()).toBe(5n);
      link.at = null; // detached
      expect(await group.purgeSecured()).toBe(8n);
      tapes.at = 2n; // behind journal-out: nothing moves back
      expect(await group.purgeSecured()).toBe(8n);
      tapes.at = 99n;
      expect(await group.purgeSecured()).toBe(11n);
    } finally {
      await group.close();
    }
  });

  it('one purge at a time: an export, an ack and a link session asking together read the consumers in turn', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const tapes = consumer('tapes', 3n);
    let open!: () => void;
    tapes.gate = new Promise((r) => { open = r; });
    const group = await JournalGroup.open(g, { consumers: [tapes], checkpointIntervalMs: 0 });
    try {
      for (let i = 0; i < 6; i++) await group.write('a', 0, Buffer.alloc(4 * KiB, i + 1));
      const asked = [group.purgeSecured(), group.purgeSecured(), group.purgeSecured()];
      open();
      expect(await Promise.all(asked)).toEqual([4n, 4n, 4n]);
      expect(tapes.overlap).toBe(1);
    } finally {
      await group.close();
    }
  });

  it('a group opened without its consumers refuses to purge (it cannot know who still needs the records)', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      await group.write('a', 0, Buffer.alloc(4 * KiB, 1));
      await expect(group.purgeSecured()).rejects.toThrow(/without its journal consumers/);
      expect(group.journal.outSeq).toBe(1n);
    } finally {
      await group.close();
    }
  });

  it("the site's consumers: a fresh group (no tape, no secondary) pins everything", async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    expect(SITE_CONSUMERS.map((c) => c.name)).toEqual(['tapes', 'link']);
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      await group.write('a', 0, Buffer.alloc(4 * KiB, 1));
      for (const c of SITE_CONSUMERS) expect(await c.secured(group)).toBeNull();
      expect(await group.purgeSecured()).toBe(1n);
    } finally {
      await group.close();
    }
  });
});
