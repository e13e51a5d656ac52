import { openSync, readSync, writeSync, closeSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { planLayout } from '../../src/core/journal-layout.js';
import { RECORD_SIZE, RecordType, dataCrc, encodeRecord } from '../../src/core/record.js';
import { JournalVolume, SYNC_WRITE_BYTES, type RecoveryReport } from '../../src/journal/journal-volume.js';
import type { JournalLayout } from '../../src/core/journal-layout.js';
import { tempDir, makeGroup, KiB, MiB } from '../helpers.js';

function patch(path: string, pos: number, f: (b: Buffer) => void, len = 1): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(len);
  readSync(fd, b, 0, len, pos);
  f(b);
  writeSync(fd, b, 0, len, pos);
  closeSync(fd);
}

describe('journal volume', () => {
  const dir = tempDir();

  // One 48 KiB write per batch is written from the event loop's thread; four at once make a batch for the thread pool.
  it.each([
    ['one write per batch (written from the event loop)', 1],
    ['four writes per batch (written by the thread pool)', 4],
  ])('wraps around both rings and keeps records readable after reopening: %s', async (_, perBatch) => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 1 * MiB });
    let group = await JournalGroup.open(g);
    const dataSize = group.journal.layout.dataSize;
    expect(perBatch * 48 * KiB > SYNC_WRITE_BYTES).toBe(perBatch > 1);
    const written: Array<{ seq: bigint; byte: number }> = [];
    // Write about three times the data ring, purging behind.
    for (let i = 0; written.length === 0 || i * 48 * KiB < 3 * dataSize; i += perBatch) {
      const rs = await Promise.all(Array.from({ length: perBatch }, (_, k) => group.write('a', ((i + k) % 16) * 64 * KiB, Buffer.alloc(48 * KiB, (i + k) & 0xff))));
      rs.forEach((r, k) => written.push({ seq: r.seq, byte: (i + k) & 0xff }));
      const last = rs[rs.length - 1]!.seq;
      if (i % 8 === 8 - perBatch) await group.purge(last - 4n);
      if (i === 40) {
        await group.close();
        group = await JournalGroup.open(g);
      }
    }
    const recs = [];
    for await (const r of group.records()) recs.push(r);
    expect(recs.length).toBeGreaterThan(0);
    for (const r of recs) {
      const w = written.find((x) => x.seq === r.header.seq);
      expect(r.data.every((b) => b === w?.byte)).toBe(true);
    }
    expect(group.journal.allocPos).toBeGreaterThan(BigInt(2 * dataSize));
    await group.close();
  });

  it('records({ reuse }): every record read whole across batches into two buffers used in turn, one larger than a buffer on its own; a batch\'s data is overwritten two batches on (the contract: copy what you keep)', async () => {
    const g = await makeGroup(dir, { a: 16 * MiB }, { journalSize: 48 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    const sizes = [512, 1 * MiB, 3 * MiB, 6 * MiB, 4096, 2 * MiB + 512, 1 * MiB, 7 * MiB, 512, 2 * MiB];
    const model: Buffer[] = [];
    for (const [i, n] of sizes.entries()) {
      const data = Buffer.alloc(n);
      for (let b = 0; b < n; b += 512) data.writeUInt32LE((i * 1_000_003 + b) >>> 0, b);
      model.push(data);
      await group.write('a', 0, data);
    }
    const copies: Buffer[] = [];
    const views: Buffer[] = [];
    for await (const r of group.records(undefined, { reuse: true })) {
      copies.push(Buffer.from(r.data));
      views.push(r.data);
    }
    // Buffer.equals, not toEqual: a deep comparison of 24 MiB element by element takes minutes.
    expect(copies.length).toBe(model.length);
    copies.forEach((c, i) => expect(c.equals(model[i]!), `record ${i}`).toBe(true));
    // The views were reused: some no longer hold their record (which is why the tape writer copies at once).
    expect(views.some((v, i) => !v.equals(model[i]!))).toBe(true);
    await group.close();
  });

  it('takes a half-written tail record as the end of the log', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 10; i++) await group.write('a', i * 4096, Buffer.alloc(4096, i + 1));
    await group.flush();
    for (let i = 10; i < 20; i++) await group.write('a', i * 4096, Buffer.alloc(4096, i + 1));
    // Simulate a crash: copy the files as they are, without close.
    const jpath = group.journal.path;
    const layout = planLayout(4 * MiB);
    const copy = readFileSync(jpath);
    await group.close();
    writeFileSync(jpath, copy);
    // Tear the header of the last record (seq 20) and put the superblock back to the flush point.
    patch(jpath, layout.metaOffset + 20 * RECORD_SIZE + 10, (b) => { b[0] = (b[0] as number) ^ 0xff; });
    const reopened = await JournalGroup.open(g);
    expect(reopened.journal.writtenSeq).toBe(20n);
    const seqs = [];
    for await (const r of reopened.records()) seqs.push(r.header.seq);
    expect(seqs).toEqual(Array.from({ length: 19 }, (_, i) => BigInt(i + 1)));
    await reopened.close();
  });

  it('names the sequence number of a damaged record in the middle', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const group = await JournalGroup.open(g);
    for (let i = 0; i < 10; i++) await group.write('a', i * 4096, Buffer.alloc(4096, i + 1));
    const jpath = group.journal.path;
    await group.close();
    const layout = planLayout(4 * MiB);
    patch(jpath, layout.metaOffset + 5 * RECORD_SIZE + 30, (b) => { b[0] = (b[0] as number) ^ 1; });
    await expect(JournalGroup.open(g)).rejects.toThrowError(/record 5 is damaged/);
    patch(jpath, layout.metaOffset + 5 * RECORD_SIZE + 30, (b) => { b[0] = (b[0] as number) ^ 1; });
    // Damaged data is found when the record is read.
    patch(jpath, layout.dataOffset + 3 * 4096 + 7, (b) => { b[0] = (b[0] as number) ^ 1; });
    const again = await JournalGroup.open(g);
    const read = async (): Promise<void> => {
      for await (const r of again.records()) void r;
    };
    await expect(read()).rejects.toThrowError(expect.objectContaining({ code: 'JOURNAL_CORRUPT', message: expect.stringMatching(/record 4 is damaged/) }));
    await again.close();
  });

  it('survives one damaged superblock copy and refuses two', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const group = await JournalGroup.open(g);
    await group.write('a', 0, Buffer.alloc(4096, 9));
    const jpath = group.journal.path;
    await group.close();
    const gen = readFileSync(jpath).readBigUInt64LE(32) > readFileSync(jpath).readBigUInt64LE(4096 + 32) ? 0 : 1;
    patch(jpath, gen * 4096 + 40, (b) => { b[0] = (b[0] as number) ^ 0x55; });
    const g2 = await JournalGroup.open(g);
    await g2.write('a', 4096, Buffer.alloc(4096, 8));
    const recs = [];
    for await (const r of g2.records()) recs.push(r.header.seq);
    expect(recs).toEqual([1n, 2n]);
    await g2.close();
    patch(jpath, 40, (b) => { b[0] = (b[0] as number) ^ 0x55; });
    patch(jpath, 4096 + 40, (b) => { b[0] = (b[0] as number) ^ 0x55; });
    const before = readFileSync(jpath);
    await expect(JournalGroup.open(g)).rejects.toThrowError(expect.objectContaining({ code: 'JOURNAL_CORRUPT', message: expect.stringMatching(/both superblock copies/) }));
    expect(readFileSync(jpath).equals(before)).toBe(true);
  });

  it('refuses a foreign file as the journal and changes nothing', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const cfg = JSON.parse(readFileSync(join(g, 'group.json'), 'utf8')) as { journal: { path: string } };
    const foreign = Buffer.alloc(4 * MiB, 0x61);
    writeFileSync(cfg.journal.path, foreign);
    await expect(JournalGroup.open(g)).rejects.toThrowError(expect.objectContaining({ code: 'JOURNAL_NOT_JOURNAL' }));
    expect(readFileSync(cfg.journal.path).equals(foreign)).toBe(true);
  });

  it('refuses another group\'s journal', async () => {
    const g1 = await makeGroup(join(dir, 'one'), { a: 1 * MiB });
    const g2 = await makeGroup(join(dir, 'two'), { a: 1 * MiB });
    const c1 = JSON.parse(readFileSync(join(g1, 'group.json'), 'utf8')) as { journal: { path: string } };
    const c2 = JSON.parse(readFileSync(join(g2, 'group.json'), 'utf8')) as { journal: { path: string } };
    writeFileSync(c1.journal.path, readFileSync(c2.journal.path));
    await expect(JournalGroup.open(g1)).rejects.toThrowError(expect.objectContaining({ code: 'JOURNAL_MISMATCH' }));
  });
});

describe('journal volume: a batch cut short', () => {
  const dir = tempDir();

  /** Three 4 KiB records written as one batch past the durable head, then the journal reopened as after a kill. */
  async function torn(damage: (path: string, layout: JournalLayout, dataPos: number) => void): Promise<RecoveryReport> {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const path = join(g, 'journal.jv');
    const j = await JournalVolume.open(path);
    await j.recover(() => undefined);
    const batch = [1, 2, 3].map((i) => {
      const data = Buffer.alloc(4096, i);
      const { seq, dataPos } = j.allocate(data.length);
      const header = encodeRecord({ type: RecordType.Update, flags: 0, volume: 0, seq, timestamp: BigInt(i), offset: i * 4096, length: 4096, dataPos, aux: 0n, dataCrc: dataCrc(data) });
      return { seq, dataPos, header, data };
    });
    await j.writeBatch(batch);
    await j.close();
    damage(path, j.layout, Number(batch[2]!.dataPos));
    const again = await JournalVolume.open(path);
    try {
      return await again.recover(() => undefined);
    } finally {
      await again.close();
    }
  }

  it('keeps every record of a batch that landed whole', async () => {
    const r = await torn(() => undefined);
    expect(r.endSeq).toBe(4n);
    expect(r.recoveredTail).toBe(3);
  });

  it('ends the log before a record whose header landed and whose data did not (its CRC names it)', async () => {
    const r = await torn((path, layout, pos) => patch(path, layout.dataOffset + pos, (b) => b.fill(0), 4096));
    expect(r.endSeq).toBe(3n);
    expect(r.tailStop).toMatch(/seq 3/);
  });

  it('ends the log before a record whose data landed and whose header did not', async () => {
    const r = await torn((path, layout) => patch(path, layout.metaOffset + 3 * RECORD_SIZE, (b) => b.fill(0), RECORD_SIZE));
    expect(r.endSeq).toBe(3n);
    expect(r.recoveredTail).toBe(2);
  });
});
