import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { RecordType } from '../../src/core/record.js';
import { decodeMarker } from '../../src/core/marker.js';
import { applyToImages, compareReplayOrder } from '../../src/core/replay.js';
import type { JournalRecord } from '../../src/journal/journal-volume.js';
import { tempDir, makeGroup, KiB, MiB } from '../helpers.js';

async function allRecords(group: JournalGroup): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of group.records()) out.push({ header: r.header, data: Buffer.from(r.data) });
  return out;
}

describe('journal-full policies', () => {
  const dir = tempDir();

  it('block: a write waits for space, proceeds once purge frees it, and fails after the timeout with nothing consumed', async () => {
    const g = await makeGroup(dir, { a: 2 * MiB }, { journalSize: 1 * MiB, blockTimeoutMs: 300 });
    const group = await JournalGroup.open(g);
    try {
      const chunk = 128 * KiB;
      let last = 0n;
      for (let i = 0; group.journal.fits(1, chunk, false); i++) last = (await group.write('a', (i % 16) * chunk, Buffer.alloc(chunk, i + 1))).seq;
      expect(group.state).toBe('nearly-full');
      const before = group.journal.allocSeq;
      // Times out: JOURNAL_FULL, and no sequence number was used.
      await expect(group.write('a', 0, Buffer.alloc(chunk, 0x77))).rejects.toThrowError(expect.objectContaining({ code: 'JOURNAL_FULL' }));
      expect(group.journal.allocSeq).toBe(before);
      // Waits, then goes through when space is freed.
      const pending = group.write('a', 0, Buffer.alloc(chunk, 0x78));
      // Waits until the write is queued for space (no fixed delay: the status says when).
      while ((await group.status()).waitingWriters === 0) await new Promise((r) => setImmediate(r));
      expect((await group.status()).waitingWriters).toBe(1);
      expect(group.state).toBe('full');
      await group.purge(last);
      const r = await pending;
      expect(r.seq).toBe(before);
      expect((await group.volumes[0]!.read(0, 4)).toString('hex')).toBe('78787878');
    } finally {
      await group.close();
    }
  });

  it('suspend: many writers finding the journal full at once all go on into the bitmap (no one before it is open)', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      const writes = Array.from({ length: 32 }, (_, i) => group.write('a', i * 128 * KiB, Buffer.alloc(128 * KiB, i + 1)));
      const results = await Promise.all(writes);
      expect(results.some((r) => !r.journaled)).toBe(true);
      expect(group.state).toBe('suspended');
      for (let i = 0; i < 32; i++) expect((await group.read('a', i * 128 * KiB, 128 * KiB)).every((x) => x === i + 1)).toBe(true);
    } finally {
      await group.close();
    }
  });

  it('suspend: writes go on into the dirty bitmap, resume after purge, and a resync base reads exactly the dirty chunks', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    let group = await JournalGroup.open(g);
    const image = Buffer.alloc(4 * MiB);
    const write = async (off: number, len: number, fill: number): Promise<boolean> => {
      const r = await group.write('a', off, Buffer.alloc(len, fill));
      image.fill(fill, off, off + len);
      return r.journaled;
    };
    try {
      const fullBase = await group.beginBase();
      const baseRecs: JournalRecord[] = [];
      for await (const r of fullBase.read()) baseRecs.push(r);
      await fullBase.complete();
      let i = 0;
      while (await write((i * 100 * KiB) % (3 * MiB), 100 * KiB, (i % 250) + 1)) i++;
      expect(group.state).toBe('suspended');
      // Suspended: more writes, acknowledged through the bitmap only.
      expect(await write(3 * MiB + 5000, 10_000, 0xaa)).toBe(false);
      expect(await write(100, 10, 0xab)).toBe(false);
      await expect(group.mark('x')).rejects.toThrowError(expect.objectContaining({ code: 'JOURNAL_SUSPENDED' }));
      const st = await group.status();
      expect(st.dirty?.chunks).toBeGreaterThanOrEqual(3);
      // Survives a restart in the suspended state.
      await group.close();
      group = await JournalGroup.open(g);
      expect(group.state).toBe('suspended');
      expect(await write(200 * KiB, 1, 0xac)).toBe(false);
      const journaled = await allRecords(group);
      await group.purge(group.journal.allocSeq - 1n);
      // Space again: the next write resumes journaling; a restore point needs the resync first.
      expect(await write(0, 512, 0x01)).toBe(true);
      expect(group.state).toBe('resync-pending');
      const dirtyChunks = (await group.status()).dirty?.chunks ?? 0;
      const resync = await group.beginBase();
      expect(resync.scope).toBe('resync');
      const resyncRecs: JournalRecord[] = [];
      const concurrent = (async () => {
        for (let k = 0; k < 20; k++) await write((k * 37 * KiB) % (4 * MiB - 8 * KiB), 8 * KiB, 0xc0 + k);
      })();
      for await (const r of resync.read()) resyncRecs.push(r);
      await concurrent;
      await resync.complete();
      expect(resyncRecs.length).toBe(dirtyChunks);
      expect(group.state).toBe('active');
      await group.mark('after-resync');
      const after = await allRecords(group);
      const kinds = [...journaled, ...after].filter((r) => r.header.type === RecordType.Marker).map((r) => decodeMarker(r.data).kind);
      expect(kinds).toEqual(['base-started', 'base-complete', 'suspended', 'resumed', 'base-started', 'base-complete', 'restore-point']);
      // Full base + journaled updates + resync base + later updates rebuild the volume.
      const all = [...baseRecs, ...journaled, ...resyncRecs, ...after].sort((a, b) => compareReplayOrder(a.header, b.header));
      const rebuilt = [Buffer.alloc(4 * MiB, 0x55)];
      for (const r of all) applyToImages(rebuilt, r.header, r.data);
      expect(rebuilt[0]!.equals(image)).toBe(true);
      expect((await group.volumes[0]!.read(0, 4 * MiB)).equals(image)).toBe(true);
    } finally {
      await group.close();
    }
  });
});

describe('base under live writes', () => {
  const dir = tempDir();

  it('base records plus the updates from "base started" on rebuild the volumes, whatever the interleaving', async () => {
    for (let trial = 0; trial < 5; trial++) {
      const g = await makeGroup(`${dir}/${trial}`, { a: 2 * MiB, b: 1 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
      const group = await JournalGroup.open(g);
      try {
        const images = [Buffer.alloc(2 * MiB), Buffer.alloc(1 * MiB)];
        const writer = async (count: number, seed: number): Promise<void> => {
          for (let k = 0; k < count; k++) {
            const v = (k + seed) % 2;
            const size = images[v]!.length;
            const len = 512 * (1 + ((k * 7 + seed) % 64));
            const off = ((k * 104729 + seed * 7919) % Math.floor((size - len) / 512)) * 512;
            const fill = ((k + seed) % 254) + 1;
            // Several writes in flight at once, as NBD clients do.
            const ps = [group.write(v, off, Buffer.alloc(len, fill)), group.write(v, (off + 4096) % (size - len), Buffer.alloc(len, fill ^ 0xff))];
            images[v]!.fill(fill, off, off + len);
            images[v]!.fill(fill ^ 0xff, (off + 4096) % (size - len), (off + 4096) % (size - len) + len);
            await Promise.all(ps);
          }
        };
        await writer(50, trial);
        const base = await group.beginBase();
        const baseRecs: JournalRecord[] = [];
        const reading = (async () => {
          for await (const r of base.read()) {
            baseRecs.push(r);
            // Lets the writers run between chunks (a yield, not a wait on the clock).
            if (baseRecs.length % 5 === 0) await new Promise((res) => setImmediate(res));
          }
        })();
        await Promise.all([reading, writer(150, trial + 1), writer(100, trial + 2)]);
        await base.complete();
        await writer(30, trial + 3);
        const updates = (await allRecords(group)).filter((r) => r.header.seq > base.baseId);
        const merged = [...baseRecs, ...updates].sort((a, b) => compareReplayOrder(a.header, b.header));
        const rebuilt = [Buffer.alloc(2 * MiB, 0x33), Buffer.alloc(1 * MiB, 0x33)];
        for (const r of merged) applyToImages(rebuilt, r.header, r.data);
        expect(rebuilt[0]!.equals(images[0]!)).toBe(true);
        expect(rebuilt[1]!.equals(images[1]!)).toBe(true);
        // Positions lie between "base started" and "base complete".
        for (const r of baseRecs) expect(r.header.seq).toBeGreaterThanOrEqual(base.baseId);
      } finally {
        await group.close();
      }
    }
  });

  it('suspend: an idle group resumes when its journal is purged, and a full base after the resume heals it as a resync base would', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      let i = 0;
      while ((await group.write('a', (i * 100 * KiB) % (3 * MiB), Buffer.alloc(100 * KiB, (i % 250) + 1))).journaled) i++;
      expect(group.state).toBe('suspended');
      await group.purge(group.journal.allocSeq - 1n);
      // No client write since: journaling is back all the same, waiting for a base.
      expect(group.state).toBe('resync-pending');
      const kinds = (await allRecords(group)).filter((r) => r.header.type === RecordType.Marker).map((r) => decodeMarker(r.data).kind);
      expect(kinds).toEqual(['resumed']);
      const full = await group.beginBase({ scope: 'full' });
      for await (const r of full.read()) void r;
      await full.complete();
      expect(group.state).toBe('active');
      await group.mark('after-full-base');
      expect((await group.status()).dirty).toBeNull();
    } finally {
      await group.close();
    }
  });

  it('suspend in a promoted group: writes that went into the dirty bitmap only are in the epoch\'s written chunks too (what a demoted old primary gets again)', async () => {
    const d = join(dir, 'promoted');
    const g = await makeGroup(d, { a: 4 * MiB }, {
      journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB, existingFiles: true,
      continues: { groupId: randomUUID(), epochs: [{ generation: 2, startSeq: '101' }], firstSeq: 101n, lastTimestamp: 1n },
    });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      let i = 0;
      while ((await group.write('a', (i * 64 * KiB) % (2 * MiB), Buffer.alloc(64 * KiB, 1))).journaled) i++;
      expect(group.state).toBe('suspended');
      // Chunk 40 (at 2.5 MiB) is written only while suspended.
      expect((await group.write('a', 40 * 64 * KiB, Buffer.alloc(4 * KiB, 2))).journaled).toBe(false);
      expect(group.epochDirty()?.chunks[0]).toContain(40);
    } finally {
      await group.close();
    }
  });
});
