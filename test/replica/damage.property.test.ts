import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isJshipError } from '../../src/core/errors.js';
import { importTapes } from '../../src/replica/import.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { tempDir } from '../helpers.js';
import { baseGroup, cloneGroup, frames, nextTape, tapeFiles } from './forge.js';

/** One way a carried tape gets damaged, or forged from a copied group's tape of the same serial. */
type Damage =
  | { kind: 'flip'; at: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; frame: number; from: number }
  | { kind: 'swap'; frame: number };

function damage(good: Buffer, other: Buffer, d: Damage): Buffer {
  const f = frames(good);
  const o = frames(other);
  const pick = <T>(xs: T[], i: number): T => xs[i % xs.length] as T;
  switch (d.kind) {
    case 'flip': {
      const bad = Buffer.from(good);
      const bit = d.at % (good.length * 8);
      bad[bit >> 3] = (bad[bit >> 3] as number) ^ (1 << (bit & 7));
      return bad;
    }
    case 'truncate':
      return good.subarray(0, d.at % good.length);
    case 'splice': {
      const [at, len] = pick(f, d.frame);
      const [bo, bl] = pick(o, d.from);
      return Buffer.concat([good.subarray(0, at), other.subarray(bo, bo + bl), good.subarray(at + len)]);
    }
    case 'swap': {
      const i = 1 + (d.frame % (f.length - 3)); // two neighbouring segment frames
      const [a0, al] = f[i] as [number, number];
      const [b0, bl] = f[i + 1] as [number, number];
      return Buffer.concat([good.subarray(0, a0), good.subarray(b0, b0 + bl), good.subarray(a0, a0 + al), good.subarray(b0 + bl)]);
    }
  }
}

describe('damaged and forged tapes (fuzz, bounded)', () => {
  const dir = tempDir();

  it('no restore ever differs from the primary: refused is fine, wrong is not', async () => {
    const p = join(dir, 'p');
    const c = join(dir, 'c');
    mkdirSync(p);
    await baseGroup(p);
    cloneGroup(p, c);
    for (const [i, seed] of [[0, 21], [1, 22]] as const) {
      await nextTape(join(p, 'group'), join(p, 't'), 40, seed);
      await nextTape(join(c, 'group'), join(c, 't'), 40 + i * 3, seed + 100);
    }
    const genuine = tapeFiles(join(p, 't'));
    const forged = tapeFiles(join(c, 't'));
    // The model: the primary's image at each sequence number, restored from its genuine tapes.
    const truth = join(dir, 'truth');
    await importTapes(truth, genuine);
    const images = new Map<bigint, Buffer>();
    const modelAt = async (seq: bigint): Promise<Buffer> => {
      const hit = images.get(seq);
      if (hit) return hit;
      const out = join(dir, 'model', String(seq));
      await restoreReplica(truth, { point: { kind: 'seq', seq }, targets: [{ path: `${out}/` }] });
      const img = Buffer.concat([readFileSync(join(out, 'a.img')), readFileSync(join(out, 'b.img'))]);
      images.set(seq, img);
      rmSync(out, { recursive: true, force: true });
      return img;
    };
    const last = (await restoreReplica(truth, { point: { kind: 'latest' }, dryRun: true, targets: [{ path: join(dir, 'z/') }] })).plan.seq;

    const damageArb: fc.Arbitrary<Damage> = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('splice' as const), frame: fc.nat(), from: fc.nat() }),
      fc.record({ kind: fc.constant('swap' as const), frame: fc.nat() }),
    );
    let run = 0;
    let restored = 0;
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 2 }), damageArb, fc.array(fc.bigInt({ min: 1n, max: last }), { minLength: 2, maxLength: 3 }), async (which, d, points) => {
      const r = join(dir, `run-${run++}`);
      mkdirSync(r);
      const bad = join(r, 'bad.tar.zst');
      writeFileSync(bad, damage(readFileSync(genuine[which] as string), readFileSync(forged[which] as string), d));
      const rep = join(r, 'rep');
      await importTapes(rep, genuine.map((g, i) => (i === which ? bad : g)));
      for (const point of [{ kind: 'latest' as const }, ...points.map((seq) => ({ kind: 'seq' as const, seq }))]) {
        const out = join(r, 'out');
        try {
          const res = await restoreReplica(rep, { point, targets: [{ path: `${out}/` }], force: true });
          restored++;
          const img = Buffer.concat([readFileSync(join(out, 'a.img')), readFileSync(join(out, 'b.img'))]);
          expect(img.equals(await modelAt(res.plan.seq)), `${JSON.stringify(d)} tape ${which + 1}: restore to seq ${res.plan.seq} differs from the primary`).toBe(true);
        } catch (e) {
          if (!isJshipError(e) || e.code !== 'RESTORE_REFUSED') throw e;
        }
      }
      rmSync(r, { recursive: true, force: true });
    }), { numRuns: 40 });
    expect(restored).toBeGreaterThan(0);
  });
});
