import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalGroup, type JournalConsumer } from '../../src/journal/journal-group.js';
import { makeGroup, MiB, tempDir } from '../helpers.js';

describe('JournalGroup.hold', () => {
  const dir = tempDir();

  it('keeps records from where it starts through every purge until it moves or is released', async () => {
    // A consumer that has secured everything written.
    const all: JournalConsumer = { name: 'all', secured: async (group) => group.journal.writtenSeq - 1n };
    const group = await JournalGroup.open(await makeGroup(join(dir, 'a'), { v: MiB }), { checkpointIntervalMs: 0, consumers: [all] });
    try {
      for (let i = 0; i < 10; i++) await group.write('v', i * 4096, Buffer.alloc(4096, i));
      const first = group.journal.outSeq;
      const a = await group.hold(first + 3n);
      const b = await group.hold(first + 6n);
      expect([a.from, b.from]).toEqual([first + 3n, first + 6n]);
      expect(await group.purgeSecured()).toBe(first + 3n);
      // A hold asked for before journal-out keeps from journal-out.
      const c = await group.hold(1n);
      expect(c.from).toBe(first + 3n);
      c.release();
      a.move(first + 5n);
      expect(await group.purgeSecured()).toBe(first + 5n);
      a.release();
      expect(await group.purgeSecured()).toBe(first + 6n);
      b.release();
      // Moving a released hold brings nothing back.
      b.move(first);
      expect(await group.purgeSecured()).toBe(group.journal.writtenSeq);
    } finally {
      await group.close();
    }
  });

  it('waits for a purge that is running, and counts once that purge is done', async () => {
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => { release = r; });
    // A consumer slow to answer: its purge runs while the hold is asked for.
    const slow: JournalConsumer = { name: 'slow', secured: async (group) => { await gate; return group.journal.writtenSeq - 1n; } };
    const group = await JournalGroup.open(await makeGroup(join(dir, 'b'), { v: MiB }), { checkpointIntervalMs: 0, consumers: [slow] });
    try {
      for (let i = 0; i < 10; i++) await group.write('v', i * 4096, Buffer.alloc(4096, i));
      const purging = group.purgeSecured();
      const holding = group.hold(group.journal.outSeq);
      release();
      const out = await purging;
      const h = await holding;
      // The hold begins where that purge left the journal: nothing it holds was purged under it.
      expect(h.from).toBe(out);
      expect(out).toBe(group.journal.writtenSeq);
      h.release();
    } finally {
      await group.close();
    }
  });
});
