import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { createGroup } from '../../src/journal/group-create.js';
import { RecordType } from '../../src/core/record.js';
import { tempDir, KiB, MiB } from '../helpers.js';

// A write's payload as an NBD connection hands it on: in the pieces the socket's reads left it in (views,
// not joined). Journal, PVOL and reads must hold exactly the joined bytes, whatever the cuts.

const VOLUME = 512 * KiB; // two extents of 256 KiB: writes cross the boundary

const writeArb = fc.record({
  length: fc.integer({ min: 1, max: 300 * KiB }),
  at: fc.nat(),
  seed: fc.integer({ min: 1, max: 0x7fffffff }),
  cuts: fc.array(fc.nat(), { maxLength: 20 }),
}).map(({ length, at, seed, cuts }) => {
  const all = Buffer.allocUnsafe(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    all[i] = x >>> 24;
  }
  const points = [...new Set(cuts.map((c) => c % length).filter((c) => c > 0))].sort((a, b) => a - b);
  const edges = [0, ...points, length];
  const pieces = edges.slice(1).map((end, i) => all.subarray(edges[i], end));
  return { offset: at % (VOLUME - length + 1), all, pieces };
});

describe('writes given in pieces', () => {
  const dir = tempDir();
  let run = 0;

  it('journal records, reads and the PVOL hold the joined bytes, across records and extents (property)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(writeArb, { minLength: 1, maxLength: 10 }), fc.boolean(), async (writes, replyAfterJournal) => {
      const d = join(dir, String(run++));
      mkdirSync(d);
      const g = join(d, 'group');
      const files = [join(d, 'a.img'), join(d, 'b.img')];
      await createGroup(g, { volumes: [{ name: 'v', extents: files.map((path) => ({ path, size: VOLUME / 2 })) }], journalSize: 1 * MiB });
      const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, replyAfterJournal });
      const image = Buffer.alloc(VOLUME);
      try {
        // A write larger than a record's data limit becomes several records: the cuts fall anywhere in them.
        expect(group.journal.maxRecordData).toBeLessThan(300 * KiB);
        let next = group.journal.allocSeq;
        for (const w of writes) {
          const r = await group.write('v', w.offset, w.pieces.length === 1 ? w.all : w.pieces);
          w.all.copy(image, w.offset);
          // Its records' data, read back with each CRC checked, are its bytes in order.
          const journaled: Buffer[] = [];
          for await (const rec of group.records(next, { to: r.seq + 1n })) if (rec.header.type === RecordType.Update) journaled.push(Buffer.from(rec.data));
          expect(Buffer.concat(journaled).equals(w.all)).toBe(true);
          expect((await group.read('v', 0, VOLUME)).equals(image)).toBe(true);
          // Room for the next write: the PVOL made durable, the records let go.
          await group.checkpoint();
          await group.purge(r.seq);
          next = r.seq + 1n;
        }
      } finally {
        await group.close();
      }
      expect(Buffer.concat(files.map((f) => readFileSync(f))).equals(image)).toBe(true);
    }), { numRuns: 30 });
  });
});
