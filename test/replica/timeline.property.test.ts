import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isJshipError } from '../../src/core/errors.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { importTapes } from '../../src/replica/import.js';
import { Replica } from '../../src/replica/replica.js';
import { planRestore } from '../../src/replica/restore-plan.js';
import { buildTimeline } from '../../src/replica/timeline.js';
import { KiB, makeGroup, tempDir } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';

type Night = { writes: number; base: boolean; mark: boolean; held: boolean };

/**
 * What the timeline says can be restored is exactly what restore accepts:
 * for random histories (several bases, some under live writes, markers) and
 * random sets of tapes held (gaps before, between and after bases), every
 * record's sequence number is inside timeline's restorable ranges if and
 * only if `restore --seq` plans it, and every marker is flagged accordingly.
 */
describe('timeline against restore (property)', () => {
  const dir = tempDir();
  let run = 0;

  it('restorable ranges = the points restore accepts; markers flagged restorable exactly when they are', async () => {
    const night = fc.record({ writes: fc.integer({ min: 0, max: 12 }), base: fc.boolean(), mark: fc.boolean(), held: fc.boolean() });
    await fc.assert(fc.asyncProperty(fc.array(night, { minLength: 2, maxLength: 7 }), async (nights: Night[]) => {
      const d = join(dir, String(run++));
      const g = await makeGroup(d, { a: 256 * KiB, b: 64 * KiB }, { journalSize: 8 * 1024 * 1024, chunkSize: 16 * KiB });
      const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
      const held: string[] = [];
      try {
        for (const [i, n] of nights.entries()) {
          const tapes = join(d, `night-${i}`);
          const write = async (): Promise<void> => {
            for (let k = 0; k < n.writes; k++) await group.write(k % 2, ((k * 7 + i) % 16) * 4 * KiB, Buffer.alloc(4 * KiB, k + i + 1));
          };
          if (n.base) await Promise.all([exportTo(group, tapes, { base: true }), write()]);
          else await write();
          if (n.mark) await group.mark(`m${i}`);
          await exportTo(group, tapes, { allowEmpty: true });
          if (n.held) held.push(...readdirSync(tapes).filter((n) => n.endsWith('.tar.zst')).map((f) => join(tapes, f)));
        }
      } finally {
        await group.close();
      }
      if (held.length === 0) return;
      const rep = join(d, 'rep');
      await importTapes(rep, held);
      const r = await Replica.open(rep);
      try {
        const t = buildTimeline(r.catalog);
        const inRanges = (seq: bigint): boolean => t.restorable.some((x) => x.fromSeq <= seq && seq <= x.toSeq);
        const accepts = (seq: bigint): boolean => {
          try {
            planRestore(r.catalog, { kind: 'seq', seq });
            return true;
          } catch (e) {
            if (isJshipError(e, 'RESTORE_REFUSED')) return false;
            throw e;
          }
        };
        for (const c of r.catalog.coverage()) {
          for (let seq = c.from; seq <= c.to; seq++) expect(inRanges(seq), `seq ${seq}`).toBe(accepts(seq));
        }
        for (const x of t.restorable) {
          expect(planRestore(r.catalog, { kind: 'seq', seq: x.toSeq }).ts).toBe(x.toTs);
          expect(planRestore(r.catalog, { kind: 'seq', seq: x.fromSeq }).ts).toBe(x.fromTs);
        }
        for (const m of t.markers) {
          expect(m.restorable, `marker at seq ${m.seq}`).toBe(accepts(m.seq));
          expect(m.why === null).toBe(m.restorable);
        }
        // A refused point names what can be restored.
        if (t.restorable.length > 0) {
          const outside = r.catalog.coverage().flatMap((c) => [c.from, c.to]).find((s) => !accepts(s));
          if (outside !== undefined) {
            try {
              planRestore(r.catalog, { kind: 'seq', seq: outside });
            } catch (e) {
              expect((e as { hint: string }).hint).toMatch(/restorable: seq \d+\.\.\d+ \(/);
            }
          }
        }
      } finally {
        await r.close();
      }
    }), { numRuns: 12 });
  }, 240_000);
});
