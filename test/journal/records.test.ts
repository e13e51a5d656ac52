import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { KiB, MiB, makeGroup, tempDir } from '../helpers.js';

// group.records() bounded by the caller: an export that stops at a byte limit
// (a link tape) or at the last durable record reads and checks nothing past it.
describe('JournalGroup.records bounds', () => {
  it('yields the records before `to` and up to the one reaching `maxBytes`, and reads no record past them', async () => {
    const g = await makeGroup(tempDir(), { a: 4 * MiB }, { journalSize: 32 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    try {
      // Forty records of 256 KiB: more than two of records()' 4 MiB read batches.
      for (let i = 0; i < 40; i++) await group.write('a', (i % 16) * 256 * KiB, randomBytes(256 * KiB));
      const first = group.journal.outSeq;
      const each = 64 + 256 * KiB;
      let read = 0;
      const readRecords = group.journal.readRecords.bind(group.journal);
      group.journal.readRecords = async (...args) => {
        const recs = await readRecords(...args);
        read += recs.length;
        return recs;
      };
      const take = async (opts: { to?: bigint; maxBytes?: number }): Promise<bigint[]> => {
        read = 0;
        const seqs: bigint[] = [];
        for await (const r of group.records(first, { reuse: true, ...opts })) seqs.push(r.header.seq);
        return seqs;
      };
      const seqs = (n: number): bigint[] => Array.from({ length: n }, (_, i) => first + BigInt(i));

      expect(await take({ maxBytes: 3 * each })).toEqual(seqs(3));
      expect(read).toBe(3);
      // The record that reaches the limit is the last one.
      expect(await take({ maxBytes: 2 * each + 1 })).toEqual(seqs(3));
      expect(read).toBe(3);
      expect(await take({ maxBytes: 20 * each })).toEqual(seqs(20));
      expect(read).toBe(20);
      expect(await take({ to: first + 5n })).toEqual(seqs(5));
      expect(read).toBe(5);
      expect(await take({ to: first + 30n, maxBytes: 25 * each })).toEqual(seqs(25));
      expect(read).toBe(25);
      expect(await take({ maxBytes: 0 })).toEqual([]);
      expect(await take({ to: first })).toEqual([]);
      // Unbounded: every record written.
      expect(await take({})).toEqual(seqs(40));
    } finally {
      await group.close();
    }
  }, 60_000);
});
