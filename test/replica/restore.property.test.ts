import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { importTapes } from '../../src/replica/import.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { tempDir, makeGroup, KiB } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

const SIZES = [256 * KiB, 128 * KiB];

type Op =
  | { k: 'write' | 'zero' | 'trim'; v: number; off: number; len: number; fill: number }
  | { k: 'mark' }
  | { k: 'export'; media: boolean };

const opArb = (aligned: boolean): fc.Arbitrary<Op> => fc.oneof(
  { weight: 10, arbitrary: fc.record({ k: fc.constantFrom('write' as const, 'write' as const, 'write' as const, 'zero' as const, 'trim' as const), v: fc.integer({ min: 0, max: 1 }), a: fc.nat(1 << 20), l: fc.integer({ min: 1, max: 40 }), fill: fc.integer({ min: 1, max: 255 }), odd: fc.nat(511) })
    .map(({ k, v, a, l, fill, odd }) => {
      const size = SIZES[v]!;
      const unit = aligned ? 512 : 1;
      const len = Math.min(size, l * (aligned ? 1024 : 1000 + odd));
      const off = Math.floor((a % (size - len + 1)) / unit) * unit;
      return { k, v, off, len, fill };
    }) },
  { weight: 1, arbitrary: fc.constant({ k: 'mark' as const }) },
  { weight: 2, arbitrary: fc.boolean().map((media) => ({ k: 'export' as const, media })) },
);

describe('restore against a model (differential)', () => {
  const dir = tempDir();
  let run = 0;

  for (const aligned of [true, false]) {
    it(`restore --until T equals the model at T, via SVOLs and targets, coalesced and in order (${aligned ? 'sector-aligned' : 'unaligned'} writes)`, async () => {
      await fc.assert(fc.asyncProperty(fc.array(opArb(aligned), { minLength: 5, maxLength: 40 }), fc.integer({ min: 0, max: 1000 }), async (ops, seed) => {
        const d = join(dir, String(run++));
        const g = await makeGroup(d, { a: SIZES[0]!, b: SIZES[1]! }, { journalSize: 8 * 1024 * 1024, chunkSize: 64 * KiB });
        const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
        const images = SIZES.map((s) => Buffer.alloc(s));
        const snaps: Array<{ ts: bigint; images: Buffer[] }> = [];
        let marks = 0;
        let afterBase = 0;
        const apply = async (op: Op): Promise<void> => {
          if (op.k === 'mark') {
            await group.mark(`m${marks++}`);
          } else if (op.k === 'export') {
            // Media hold at least the largest record (60 KB here) with a label and a trailer.
            await exportTo(group, join(d, 'tapes'), op.media ? { mediaSize: 80 * KiB } : {});
          } else {
            const r = op.k === 'write'
              ? await group.write(op.v, op.off, Buffer.alloc(op.len, op.fill))
              : op.k === 'zero' ? await group.writeZeroes(op.v, op.off, op.len) : await group.trim(op.v, op.off, op.len);
            images[op.v]!.fill(op.k === 'write' ? op.fill : 0, op.off, op.off + op.len);
            snaps.push({ ts: r.timestamp, images: images.map((b) => Buffer.from(b)) });
          }
        };
        try {
          // Some history, then a base (taken while writes go on), then the rest.
          for (const op of ops.slice(0, 3)) await apply(op);
          await Promise.all([exportTo(group, join(d, 'tapes'), { base: true }), (async () => { for (const op of ops.slice(3, 6)) if (op.k !== 'export') await apply(op); })()]);
          afterBase = snaps.length;
          for (const op of ops.slice(6)) await apply(op);
          await apply({ k: 'write', v: 1, off: 0, len: 512, fill: 0x42 });
          await exportTo(group, join(d, 'tapes'));
        } finally {
          await group.close();
        }
        // Import out of order, one tape twice.
        const files = readdirSync(join(d, 'tapes')).filter((n) => n.endsWith('.tar.zst')).sort().map((n) => join(d, 'tapes', n));
        const shuffled = [...files].sort((a, b) => ((a.length * 31 + seed) % 7) - ((b.length * 17 + seed) % 5));
        const imp = await importTapes(join(d, 'rep'), [...shuffled, files[0]!]);
        expect(imp.ok).toBe(true);
        expect(imp.gaps).toEqual([]);
        // Points after the base completed: the base export ran alongside ops 3..6; the first safe point is the last of those.
        const usable = snaps.slice(afterBase);
        const picks = usable.filter((_s, i) => i % Math.max(1, Math.floor(usable.length / 4)) === 0 || i === usable.length - 1);
        for (const [i, snap] of picks.entries()) {
          const coalesce = (i + seed) % 2 === 0;
          const out = join(d, `out-${i}`);
          await restoreReplica(join(d, 'rep'), { point: { kind: 'until', ts: snap.ts, exclusive: false }, targets: [{ path: `${out}/` }], coalesce });
          for (const [v, name] of ['a', 'b'].entries()) {
            expect(readFileSync(join(out, `${name}.img`)).equals(snap.images[v]!), `target ${name} at snapshot ${i}, coalesce ${coalesce}`).toBe(true);
          }
          // The SVOLs move forward through the same points.
          await restoreReplica(join(d, 'rep'), { point: { kind: 'until', ts: snap.ts, exclusive: false }, coalesce: !coalesce });
          for (const [v, name] of ['a', 'b'].entries()) {
            expect(readFileSync(join(d, 'rep', 'svol', `${name}.img`)).equals(snap.images[v]!), `SVOL ${name} at snapshot ${i}`).toBe(true);
          }
        }
      }), { numRuns: 6 });
    }, 240_000);
  }
});
