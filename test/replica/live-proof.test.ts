import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { leafHasher } from '../../src/core/volume-digest.js';
import { LiveProof } from '../../src/replica/live-proof.js';
import { tempDir } from '../helpers.js';

const hash = await leafHasher();

/** Writes through the proof as a restore's watched target does: checked before, told after. */
async function write(live: LiveProof, h: fsp.FileHandle, offset: number, data: Buffer): Promise<void> {
  live.willWrite(offset, data.length);
  await h.write(data, 0, data.length, offset);
  live.wrote(offset, data.length);
}

/** XXH64 of each chunk of the file as it is now. */
function fileLeaves(path: string, chunk: number): bigint[] {
  const b = readFileSync(path);
  const out: bigint[] = [];
  for (let off = 0; off < b.length; off += chunk) out.push(hash(b.subarray(off, Math.min(b.length, off + chunk))));
  return out;
}

describe('LiveProof', () => {
  const dir = tempDir();

  async function target(size: number): Promise<{ path: string; h: fsp.FileHandle }> {
    const path = join(dir, `t-${randomBytes(4).toString('hex')}.img`);
    const h = await fsp.open(path, 'w+');
    await h.truncate(size);
    return { path, h };
  }

  it('reads a chunk back once its announced writes have ended, after the seal; chunks nothing wrote have no leaf', async () => {
    const size = 4 * 4096 + 100;
    const { path, h } = await target(size);
    const live = new LiveProof(path, size, 4096, hash);
    try {
      live.announce(0, 4096); // chunk 0, whole
      live.announce(4096 + 10, 20); // part of chunk 1
      live.announce(3 * 4096, 4096 + 100); // chunk 3 and the short last chunk 4
      await write(live, h, 0, randomBytes(4096));
      // Not sealed: nothing is read back yet, whatever was written.
      await live.settle();
      expect(live.leaf(0)).toBeUndefined();
      live.seal();
      await write(live, h, 4096 + 10, randomBytes(20));
      await write(live, h, 3 * 4096, randomBytes(4096 + 100));
      await live.settle();
      const want = fileLeaves(path, 4096);
      expect(want).toHaveLength(5);
      expect(live.leaf(0)).toBe(want[0]);
      expect(live.leaf(1)).toBe(want[1]);
      expect(live.leaf(2)).toBeUndefined();
      expect(live.leaf(3)).toBe(want[3]);
      expect(live.leaf(4)).toBe(want[4]);
    } finally {
      await live.close();
      await h.close();
    }
  });

  it('waits for every announced byte of a chunk, in any order and in pieces', async () => {
    const { path, h } = await target(8192);
    const live = new LiveProof(path, 8192, 8192, hash);
    try {
      live.announce(0, 100);
      live.announce(4000, 4192);
      live.seal();
      await write(live, h, 4000, randomBytes(4192));
      await live.settle();
      expect(live.leaf(0)).toBeUndefined(); // 100 bytes still to come
      await write(live, h, 50, randomBytes(50));
      await write(live, h, 0, randomBytes(50));
      await live.settle();
      expect(live.leaf(0)).toBe(fileLeaves(path, 8192)[0]);
    } finally {
      await live.close();
      await h.close();
    }
  });

  it('refuses a write nobody announced, a write into a chunk read back, and announcements that overlap or come late', async () => {
    const { path, h } = await target(3 * 4096);
    const live = new LiveProof(path, 3 * 4096, 4096, hash);
    try {
      live.announce(0, 4096);
      expect(() => live.announce(100, 10)).toThrow(/more bytes announced for chunk 0/);
      live.announce(4096, 100);
      live.seal();
      expect(() => live.announce(8192, 10)).toThrow(/announced after the last one/);
      expect(() => live.willWrite(8192, 10)).toThrow(/was not announced/);
      expect(() => live.willWrite(4096, 200)).toThrow(/was not announced/);
      expect(() => live.wrote(0, 10)).toThrow(/had not begun/);
      await write(live, h, 0, randomBytes(4096));
      await live.settle();
      expect(live.leaf(0)).toBeDefined();
      expect(() => live.willWrite(0, 1)).toThrow(/written after it was read back/);
      expect(() => live.willWrite(3 * 4096 - 1, 2)).toThrow(/outside the volume/);
    } finally {
      await live.close();
      await h.close();
    }
  });

  it('fails settle when the target cannot be read back', async () => {
    const live = new LiveProof(join(dir, 'gone.img'), 4096, 4096, hash);
    live.announce(0, 4096);
    live.seal();
    live.willWrite(0, 4096);
    live.wrote(0, 4096);
    await expect(live.settle()).rejects.toThrow(/ENOENT/);
    await live.close();
  });

  it('against a model: disjoint writes in pieces, begun and ended in any interleaving, give the leaves of the final bytes', async () => {
    const CHUNK = 512;
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 2, max: 12 * CHUNK }).chain((size) => fc.tuple(
        fc.constant(size),
        // Cut points: consecutive ones bound a piece, written (or left alone) whole.
        fc.uniqueArray(fc.integer({ min: 1, max: size - 1 }), { maxLength: Math.min(40, size - 1) }),
        fc.array(fc.boolean(), { minLength: 41, maxLength: 41 }),
        // Each step: announce the next piece, begin the next announced piece's write, end one in flight (by
        // index), or seal (announcing the rest first), as a restore claims, writes and ends its windows.
        fc.array(fc.oneof(fc.constant<'announce'>('announce'), fc.constant<'begin'>('begin'), fc.nat(), fc.constant<'seal'>('seal')), { maxLength: 160 }),
      )),
      async ([size, cuts, writeIt, steps]) => {
        const { path, h } = await target(size);
        const live = new LiveProof(path, size, CHUNK, hash);
        try {
          const bounds = [0, ...cuts.sort((a, b) => a - b), size];
          const pieces = bounds.slice(1).map((end, i) => ({ start: bounds[i] as number, end, data: randomBytes(end - (bounds[i] as number)) })).filter((_p, i) => writeIt[i] === true);
          // A write in flight has not reached the file: its bytes land when it ends, as a target's pwrite
          // has landed once it resolves. The proof reads back whatever it queued between steps.
          const inFlight: typeof pieces = [];
          let announced = 0;
          let next = 0;
          const announce = (): void => {
            const p = pieces[announced++] as (typeof pieces)[number];
            live.announce(p.start, p.end - p.start);
          };
          let sealed = false;
          const begin = (): void => {
            const p = pieces[next++] as (typeof pieces)[number];
            live.willWrite(p.start, p.end - p.start);
            inFlight.push(p);
          };
          const end = (k: number): void => {
            const [p] = inFlight.splice(k % inFlight.length, 1) as [(typeof pieces)[number]];
            writeSync(h.fd, p.data, 0, p.data.length, p.start);
            live.wrote(p.start, p.end - p.start);
          };
          for (const s of steps) {
            if (s === 'seal') {
              while (announced < pieces.length) announce();
              if (!sealed) live.seal();
              sealed = true;
            } else if (s === 'announce') {
              if (announced < pieces.length) announce();
            } else if (s === 'begin' || inFlight.length === 0) {
              if (next < announced) begin();
            } else {
              end(s);
            }
            await live.settle();
          }
          while (announced < pieces.length) announce();
          if (!sealed) live.seal();
          while (next < pieces.length) begin();
          while (inFlight.length > 0) end(0);
          await live.settle();
          const want = fileLeaves(path, CHUNK);
          for (let c = 0; c < want.length; c++) {
            const touched = pieces.some((p) => p.start < (c + 1) * CHUNK && p.end > c * CHUNK);
            expect(live.leaf(c)).toBe(touched ? want[c] : undefined);
          }
        } finally {
          await live.close();
          await h.close();
        }
      },
    ), { numRuns: 80 });
  });
});
