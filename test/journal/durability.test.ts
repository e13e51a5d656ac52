import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HEAD_EVERY_NS, JournalGroup } from '../../src/journal/journal-group.js';
import { deferred } from '../../src/core/deferred.js';
import { tempDir, makeGroup, KiB, MiB } from '../helpers.js';
import { until } from '../link/helpers.js';

/**
 * The journal is the durability point (DESIGN invariant 2, issue 16): a flush
 * is answered once the journal's fdatasync is done, not before and without
 * waiting for the PVOLs'; the applied pointer moves only after the PVOLs'
 * fdatasync, and no purge goes past it. The fdatasyncs are held open by
 * gates put over the journal's and the volume's `sync`.
 */
describe('journal as the durability point', () => {
  const dir = tempDir();

  /** Holds every call of `obj.sync` until `open()`; `calls` counts them. */
  function gate(obj: { sync(): Promise<void> }): { calls: () => number; open: () => void } {
    const real = obj.sync.bind(obj);
    const d = deferred();
    let calls = 0;
    obj.sync = async () => {
      calls++;
      await d.promise;
      await real();
    };
    return { calls: () => calls, open: () => d.resolve() };
  }

  it('a flush waits for the journal\'s fdatasync and for no PVOL fdatasync', async () => {
    const g = await makeGroup(`${dir}/flush`, { a: 1 * MiB }, { journalSize: 8 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, replyAfterJournal: true });
    try {
      const pvol = gate(group.volumes[0]!);
      const journal = gate(group.journal);
      await group.write(0, 0, Buffer.alloc(4 * KiB, 7));
      let flushed = false;
      const flush = group.flush().then(() => { flushed = true; });
      // The flush is held at the journal's fdatasync: it reached it, and it has not resolved.
      await until('the flush to reach the journal\'s fdatasync', () => journal.calls() > 0);
      expect(flushed).toBe(false);
      journal.open();
      await flush;
      // Resolved while every PVOL fdatasync would still hang: none was asked for.
      expect(pvol.calls()).toBe(0);
      expect(group.journal.appliedSeq).toBe(0n);
      // A checkpoint is what makes the PVOL durable: the applied pointer waits for its fdatasync.
      const cp = group.checkpoint();
      await until('the checkpoint to reach the PVOL\'s fdatasync', () => pvol.calls() > 0);
      expect(group.journal.appliedSeq).toBe(0n);
      pvol.open();
      await cp;
      expect(group.journal.appliedSeq).toBe(1n);
    } finally {
      await group.close();
    }
  });

  it('a flush does not wait for the PVOL writes behind the journal; a checkpoint and a read of the range do', async () => {
    const g = await makeGroup(`${dir}/behind`, { a: 1 * MiB }, { journalSize: 8 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, replyAfterJournal: true });
    const held = deferred();
    try {
      // Hold the PVOL write of the next 4 KiB write.
      const vol = group.volumes[0]!;
      const real = vol.writeBatched.bind(vol);
      let reached = false;
      vol.writeBatched = async (...args) => {
        reached = true;
        await held.promise;
        return real(...args);
      };
      await group.write(0, 0, Buffer.alloc(4 * KiB, 9));
      await until('the PVOL write to start', () => reached);
      let flushed = false;
      const flush = group.flush().then(() => { flushed = true; });
      await until('the flush to be answered while the PVOL write is held', () => flushed);
      await flush;
      let read: Buffer | undefined;
      const reading = group.read(0, 0, 4 * KiB).then((b) => { read = b; });
      let checkpointed = false;
      const cp = group.checkpoint().then(() => { checkpointed = true; });
      // Both wait for the held write; the flush (journal fdatasync) already made the write durable.
      expect(read).toBeUndefined();
      expect(checkpointed).toBe(false);
      expect(group.journal.appliedSeq).toBe(0n);
      held.resolve();
      await Promise.all([reading, cp]);
      expect(read?.equals(Buffer.alloc(4 * KiB, 9))).toBe(true);
      expect(group.journal.appliedSeq).toBe(1n);
    } finally {
      held.resolve();
      await group.close();
    }
  });

  it('a purge never passes the applied pointer: it waits for the checkpoint', async () => {
    const g = await makeGroup(`${dir}/purge`, { a: 1 * MiB }, { journalSize: 8 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, replyAfterJournal: true });
    try {
      for (let i = 0; i < 4; i++) await group.write(0, i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1));
      await group.flush();
      const pvol = gate(group.volumes[0]!);
      let purged = false;
      const purge = group.purge(3n).then((out) => { purged = true; return out; });
      // Held at the checkpoint's PVOL fdatasync: nothing purged yet.
      await until('the checkpoint to reach the PVOL\'s fdatasync', () => pvol.calls() > 0);
      expect(purged).toBe(false);
      expect(group.journal.outSeq).toBe(1n);
      pvol.open();
      expect(await purge).toBe(4n);
      expect(group.journal.appliedSeq).toBeGreaterThanOrEqual(3n);
    } finally {
      await group.close();
    }
  });

  it('status shows how far the PVOLs are behind the journal, and a checkpoint by bytes catches up', async () => {
    const g = await makeGroup(`${dir}/status`, { a: 4 * MiB }, { journalSize: 16 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, checkpointBytes: 1 * MiB, replyAfterJournal: true });
    try {
      await group.write(0, 0, Buffer.alloc(256 * KiB, 1));
      await group.write(0, 256 * KiB, Buffer.alloc(256 * KiB, 2));
      await group.flush();
      let s = await group.status();
      expect(s.journal.appliedSeq).toBe(0n);
      expect(s.journal.pvolBehind.records).toBe(2n);
      expect(s.journal.pvolBehind.bytes).toBe(512 * KiB);
      // 1 MiB journaled since the last checkpoint starts one.
      await group.write(0, 512 * KiB, Buffer.alloc(512 * KiB, 3));
      await until('the checkpoint by bytes', async () => (await group.status()).journal.appliedSeq === 3n);
      s = await group.status();
      expect(s.journal.pvolBehind).toEqual({ records: 0n, bytes: 0, unwrittenBytes: 0 });
    } finally {
      await group.close();
    }
  });

  it('a flush rewrites the superblock\'s checkpoint at most every 10 ms; recovery finds every flushed record past it, and a purge never leaves it behind journal-out', async () => {
    const g = await makeGroup(`${dir}/head`, { a: 1 * MiB }, { journalSize: 8 * MiB });
    let mono = 1_000_000_000n;
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, monoClock: () => mono });
    const jpath = group.journal.path;
    /** The journal file as a crash would leave it now (read before the close, written back after). */
    const crashCopy = (): Buffer => readFileSync(jpath);
    try {
      await group.write(0, 0, Buffer.alloc(4 * KiB, 1));
      await group.flush();
      const first = group.journal.superblock;
      expect(first.headSeq).toBe(2n);
      for (let i = 1; i < 6; i++) {
        await group.write(0, i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1));
        await group.flush();
      }
      // Five flushes within the interval: no superblock write.
      expect(group.journal.superblock.generation).toBe(first.generation);
      const copy = crashCopy();
      mono += HEAD_EVERY_NS;
      await group.write(0, 6 * 4 * KiB, Buffer.alloc(4 * KiB, 7));
      await group.flush();
      expect(group.journal.superblock.generation).toBe(first.generation + 1n);
      expect(group.journal.superblock.headSeq).toBe(8n);
      await group.close();
      // A crash after the five: the checkpoint says seq 2, the scan past it takes the other five.
      writeFileSync(jpath, copy);
      const again = await JournalGroup.open(g, { checkpointIntervalMs: 0, monoClock: () => mono });
      try {
        const seqs: bigint[] = [];
        for await (const r of again.records()) seqs.push(r.header.seq);
        expect(seqs).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
        // Flushes within the interval, then a purge past the checkpoint they left behind.
        for (let i = 0; i < 4; i++) {
          await again.write(0, i * 4 * KiB, Buffer.alloc(4 * KiB, 0x40 + i));
          await again.flush();
        }
        const behind = again.journal.superblock.headSeq;
        expect(behind).toBeLessThan(again.journal.writtenSeq);
        await again.journal.purge(behind + 1n);
        expect(again.journal.superblock.headSeq).toBeGreaterThanOrEqual(again.journal.outSeq);
        const purged = crashCopy();
        await again.close();
        writeFileSync(jpath, purged);
      } catch (e) {
        await again.close();
        throw e;
      }
      // Opened after a crash right after the purge: journal-out and the checkpoint agree, every record after the purge is there.
      const third = await JournalGroup.open(g, { checkpointIntervalMs: 0, monoClock: () => mono });
      try {
        const seqs: bigint[] = [];
        for await (const r of third.records()) seqs.push(r.header.seq);
        expect(seqs[0]).toBe(third.journal.outSeq);
        expect(seqs[seqs.length - 1]).toBe(third.journal.writtenSeq - 1n);
      } finally {
        await third.close();
      }
    } finally {
      await group.close();
    }
  });
});
