import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { KiB, MiB, makeGroup, tempDir } from '../helpers.js';

/**
 * With replyAfterJournal (what `jship serve` uses), a write resolves once
 * journaled and its PVOL write follows. A read issued after a write resolved
 * must still see it, and close/flush must leave the PVOL complete.
 */
describe('replyAfterJournal', () => {
  const dir = tempDir();
  let n = 0;

  it('reads see every resolved write; the PVOL is complete after close (property, against a model)', async () => {
    const size = 64 * KiB;
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), offset: fc.integer({ min: 0, max: size - 1 }), len: fc.integer({ min: 1, max: 8 * KiB }), byte: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('zero' as const), offset: fc.integer({ min: 0, max: size - 1 }), len: fc.integer({ min: 1, max: 8 * KiB }) }),
      fc.record({ kind: fc.constant('read' as const), offset: fc.integer({ min: 0, max: size - 1 }), len: fc.integer({ min: 1, max: 8 * KiB }) }),
    );
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), async (ops) => {
      const sub = join(dir, `p${n++}`);
      const g = await makeGroup(sub, { a: size });
      const group = await JournalGroup.open(g, { replyAfterJournal: true, checkpointIntervalMs: 0 });
      const model = Buffer.alloc(size);
      try {
        for (const o of ops) {
          const len = Math.min(o.len, size - o.offset);
          if (o.kind === 'write') {
            await group.write(0, o.offset, Buffer.alloc(len, o.byte));
            model.fill(o.byte, o.offset, o.offset + len);
          } else if (o.kind === 'zero') {
            await group.writeZeroes(0, o.offset, len);
            model.fill(0, o.offset, o.offset + len);
          } else {
            expect((await group.read(0, o.offset, len)).equals(model.subarray(o.offset, o.offset + len))).toBe(true);
          }
        }
      } finally {
        await group.close();
      }
      expect(readFileSync(join(sub, 'a.img')).equals(model)).toBe(true);
    }), { numRuns: 25 });
  });

  it('a read right after a large write resolves waits for its PVOL write', async () => {
    const g = await makeGroup(join(dir, 'big'), { a: 8 * MiB }, { journalSize: 128 * MiB });
    const group = await JournalGroup.open(g, { replyAfterJournal: true, checkpointIntervalMs: 0 });
    try {
      for (let i = 1; i <= 6; i++) {
        await group.write(0, 0, Buffer.alloc(8 * MiB, i));
        const tail = await group.read(0, 8 * MiB - 4 * KiB, 4 * KiB);
        expect([i, tail[0], tail[4095]]).toEqual([i, i, i]);
      }
    } finally {
      await group.close();
    }
  });
});
