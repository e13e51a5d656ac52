import { getEventListeners } from 'node:events';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { settlesWithin } from '../../src/core/deferred.js';
import { makeGroup, MiB, tempDir } from '../helpers.js';

// What a link session waits on for records to send (link/primary-session.ts, recordsFor): it looked every 20 ms.
describe('JournalGroup.nextChange', () => {
  const dir = tempDir();

  it('resolves once the next batch of records is written, long before its time is up', async () => {
    const group = await JournalGroup.open(await makeGroup(join(dir, 'a'), { v: MiB }), { checkpointIntervalMs: 0 });
    try {
      const waiting = group.nextChange(600_000);
      expect(await settlesWithin(waiting, 50)).toBe(false);
      const before = group.journal.writtenSeq;
      await group.write('v', 0, Buffer.alloc(4096, 1));
      expect(group.journal.writtenSeq).toBeGreaterThan(before);
      expect(await settlesWithin(waiting, 30_000)).toBe(true);
      // Each wait is for the next change: one after the write waits again.
      expect(await settlesWithin(group.nextChange(600_000), 50)).toBe(false);
    } finally {
      await group.close();
    }
  });

  it('resolves when its signal aborts (the link connection ended), at once if it has, and leaves no listener on it', async () => {
    const group = await JournalGroup.open(await makeGroup(join(dir, 'c'), { v: MiB }), { checkpointIntervalMs: 0 });
    try {
      const ended = new AbortController();
      const waiting = group.nextChange(600_000, ended.signal);
      expect(await settlesWithin(waiting, 50)).toBe(false);
      ended.abort();
      expect(await settlesWithin(waiting, 30_000)).toBe(true);
      expect(await settlesWithin(group.nextChange(600_000, ended.signal), 30_000)).toBe(true);
      // A session waits again and again on the same connection's signal: nothing piles up on it.
      const open = new AbortController();
      for (let i = 0; i < 20; i++) {
        // Ended by its time, or by a written record.
        const next = group.nextChange(i % 2 ? 1 : 600_000, open.signal);
        expect(getEventListeners(open.signal, 'abort')).toHaveLength(1);
        if (i % 2 === 0) await group.write('v', 0, Buffer.alloc(4096, i));
        await next;
      }
      expect(getEventListeners(open.signal, 'abort')).toHaveLength(0);
    } finally {
      await group.close();
    }
  });

  it('resolves when its time is up with nothing written, and when the group closes', async () => {
    const group = await JournalGroup.open(await makeGroup(join(dir, 'b'), { v: MiB }), { checkpointIntervalMs: 0 });
    const seq = group.journal.writtenSeq;
    await group.nextChange(5);
    expect(group.journal.writtenSeq).toBe(seq);
    const waiting = group.nextChange(600_000);
    await group.close();
    expect(await settlesWithin(waiting, 30_000)).toBe(true);
  });
});
