import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import type { BaseRun } from '../../src/journal/base-reader.js';
import { makeGroup, tempDir, KiB, MiB } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

/** Reads every record of a base and completes it, as its taker does. */
async function finish(run: BaseRun): Promise<void> {
  for await (const r of run.read()) void r;
  await run.complete();
}

/**
 * One base at a time per group (a link secondary's registration, a nightly
 * `export --base`, a resync): found by the soak test under load, where a
 * nightly `export --base` failed with BASE_IN_PROGRESS because a link
 * secondary that had just registered was still taking its base.
 */
describe('bases take turns', () => {
  const dir = tempDir();

  it('two bases asked for at once: one is taken, the other is refused (never two at a time)', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      const asked = await Promise.allSettled([group.beginBase(), group.beginBase()]);
      const taken = asked.filter((r): r is PromiseFulfilledResult<BaseRun> => r.status === 'fulfilled');
      const refused = asked.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(taken).toHaveLength(1);
      expect(refused).toHaveLength(1);
      expect(refused[0]!.reason).toMatchObject({ code: 'BASE_IN_PROGRESS' });
      await finish(taken[0]!.value);
    } finally {
      await group.close();
    }
  });

  it('a base asked for with a wait starts once the one being taken ends; past the wait it is refused, naming the base', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      const first = await group.beginBase();
      const waited: Array<bigint | null> = [];
      const second = group.beginBase({ waitMs: 120_000, onWait: (id) => waited.push(id) });
      await finish(first);
      const run = await second;
      expect(run.baseId).toBeGreaterThan(first.baseId);
      expect(waited).toEqual([first.baseId]);
      // Past its wait, with the base still being taken: refused, and the message says how long it waited.
      await expect(group.beginBase({ waitMs: 50 })).rejects.toThrowError(expect.objectContaining({
        code: 'BASE_IN_PROGRESS',
        message: expect.stringMatching(new RegExp(`^base ${run.baseId} is still being taken \\(waited 0\\.05 s\\)`)),
      }));
      await finish(run);
    } finally {
      await group.close();
    }
  });

  it('a base waiting behind a resync base starts after the healed bitmap is gone: a full base, not a resync of a bitmap being closed', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      for (let i = 0; (await group.write('a', (i * 100 * KiB) % (3 * MiB), Buffer.alloc(100 * KiB, i + 1))).journaled; i++);
      expect(group.state).toBe('suspended');
      await group.purge(group.journal.allocSeq - 1n);
      expect((await group.write('a', 0, Buffer.alloc(512, 1))).journaled).toBe(true);
      expect(group.state).toBe('resync-pending');
      const resync = await group.beginBase();
      expect(resync.scope).toBe('resync');
      const next = group.beginBase({ waitMs: 120_000 });
      await finish(resync);
      const run = await next;
      expect(run.scope).toBe('full');
      expect(group.state).toBe('active');
      await finish(run);
    } finally {
      await group.close();
    }
  });

  it('a group closed while a base waits: the waiter is told at once (GROUP_CLOSED), not at the end of its wait', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    const first = await group.beginBase();
    const waiting = group.beginBase({ waitMs: 600_000 });
    await first.abort('the test closes the group');
    // The aborted base's end lets the waiter in first: it takes its base, which the close below leaves behind.
    const second = await waiting;
    const third = expect(group.beginBase({ waitMs: 600_000 })).rejects.toThrowError(expect.objectContaining({ code: 'GROUP_CLOSED' }));
    await group.close();
    await third;
    expect(second.baseId).toBeGreaterThan(first.baseId);
  });

  it('export --base while another base is being taken (a link secondary registering) waits for it, then exports its own', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { chunkSize: 64 * KiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      await group.write('a', 0, Buffer.alloc(64 * KiB, 7));
      const other = await group.beginBase();
      const exported = exportTo(group, join(dir, 'tapes-wait'), { base: true });
      await finish(other);
      const r = await exported;
      expect(r.base?.baseId).toBeGreaterThan(other.baseId);
      expect(r.warnings.join('\n')).toMatch(new RegExp(`waited for base ${other.baseId}`));
      // Without time to wait, the export is refused.
      const held = await group.beginBase();
      await expect(exportTo(group, join(dir, 'tapes-busy'), { base: true, waitMs: 0 })).rejects.toThrowError(expect.objectContaining({ code: 'BASE_IN_PROGRESS' }));
      await finish(held);
    } finally {
      await group.close();
    }
  });
});
