import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { importTapes } from '../../src/replica/import.js';
import { Replica } from '../../src/replica/replica.js';
import { planRestore } from '../../src/replica/restore-plan.js';
import { Applier } from '../../src/replica/applier.js';
import { SegmentSource, type PayloadLease } from '../../src/replica/segment-source.js';
import { openFileTarget, tmpPathFor, type RestoreTarget } from '../../src/replica/targets.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { makeGroup, MiB, tempDir } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';

/** File descriptors of this process open on files under `dir`. */
function openUnder(dir: string): string[] {
  return readdirSync('/proc/self/fd').map((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return '';
    }
  }).filter((p) => p.startsWith(dir));
}

describe('Applier: a coalesced restore through leased payloads', () => {
  const dir = tempDir();

  /** A group of 24 MiB written whole, exported in tapes of 3 MiB (more than a source keeps open), then changed in places; its image. */
  async function replicaOfChangedGroup(): Promise<Buffer> {
    const size = 24 * MiB;
    const g = await makeGroup(dir, { a: size }, { journalSize: 96 * MiB, chunkSize: 1 * MiB });
    const group = await openSiteGroup(g);
    const image = Buffer.alloc(size);
    const write = async (off: number, data: Buffer): Promise<void> => {
      await group.write('a', off, data);
      data.copy(image, off);
    };
    for (let i = 0; i < size / MiB; i++) await write(i * MiB, randomBytes(MiB));
    await exportTo(group, join(dir, 't'), { base: true, mediaSize: 3 * MiB });
    for (let i = 0; i < 6; i++) await write(((i * 7) % 24) * MiB + 4096 * i, randomBytes(MiB - 4096 * i));
    await exportTo(group, join(dir, 't'), { mediaSize: 3 * MiB });
    await group.close();
    expect(readdirSync(join(dir, 't')).filter((f) => f.endsWith('.tar.zst')).length).toBeGreaterThan(6);
    await importTapes(join(dir, 'rep'), [join(dir, 't')]);
    return image;
  }

  it('segments written on the workers: after one fails, no segment more starts, and the failure is thrown only once every one started has ended (no worker writes a target its caller may close)', async () => {
    const image = await replicaOfChangedGroup();
    const replica = await Replica.open(join(dir, 'rep'));
    const pool = new FramePool();
    const target = await openFileTarget('a', join(dir, 'out.img'), image.length, false);
    try {
      const cat = replica.catalog;
      const source = new SegmentSource(replica, undefined, { pool });
      const real = source.writeParts.bind(source);
      const started: number[] = [];
      let running = 0;
      // The first segment fails at once; every other one first lets the event loop turn many times (a restore
      // that threw at once would have thrown by then), then is written.
      source.writeParts = async (seg, parts): Promise<number> => {
        const n = started.push(seg.idx);
        running++;
        try {
          if (n === 1) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', targetFd: target.direct?.fd });
          for (let i = 0; i < 50; i++) await tick();
          return await real(seg, parts);
        } finally {
          running--;
        }
      };
      const apply = new Applier(cat, planRestore(cat, { kind: 'latest' }), [target], [image.length], source);
      const err = await apply.coalesced().catch((e: unknown) => e);
      expect(running).toBe(0);
      expect(err).toMatchObject({ code: 'EIO', path: join(dir, 'out.img') });
      // Those given to the workers with it (the pool's capacity) ran to their end; none was started after.
      expect(started.length).toBe(source.partsInFlight);
      await source.release();
      // Without the failure, the same restore writes the image exactly.
      source.writeParts = real;
      const again = new Applier(cat, planRestore(cat, { kind: 'latest' }), [target], [image.length], source);
      await again.coalesced();
      await target.finish();
      expect(readFileSync(tmpPathFor(join(dir, 'out.img'))).equals(image)).toBe(true);
      await source.release();
    } finally {
      await target.abort();
      await target.release();
      await pool.close();
      await replica.close();
    }
  });

  it('tells of each region of a target, once, as soon as nothing more will be written there: no write into it begins or is still running after (a restore\'s proof reads it back then), and the first is told while writes go on', async () => {
    const image = await replicaOfChangedGroup();
    const size = image.length;
    const replica = await Replica.open(join(dir, 'rep'));
    const pool = new FramePool();
    const regionBytes = 2 * MiB;
    try {
      const cat = replica.catalog;
      // On the workers (a file target) and through leased payloads (a target with no descriptor); in one window
      // of claims, and in windows of 7 claims (a restore of more than 250 000: regions whole after a window are told then).
      for (const [direct, window] of [[true, undefined], [false, undefined], [true, 7], [false, 7]] as const) {
        const source = new SegmentSource(replica, undefined, { pool });
        const events: string[] = [];
        const told = new Map<number, number>();
        const running = new Map<number, number>();
        const wrong: string[] = [];
        const regionsOf = (offset: number, length: number): number[] => Array.from({ length: Math.floor((offset + length - 1) / regionBytes) - Math.floor(offset / regionBytes) + 1 }, (_v, k) => Math.floor(offset / regionBytes) + k);
        const begin = (offset: number, length: number): void => {
          events.push('write');
          for (const r of regionsOf(offset, length)) {
            if (told.has(r)) wrong.push(`a write into region ${r} began after it was told`);
            running.set(r, (running.get(r) ?? 0) + 1);
          }
        };
        const end = (offset: number, length: number): void => {
          for (const r of regionsOf(offset, length)) running.set(r, (running.get(r) ?? 0) - 1);
        };
        const regions = {
          regionBytes,
          final(volume: number, region: number): void {
            events.push('final');
            if (volume !== 0) wrong.push(`volume ${volume} told`);
            if ((running.get(region) ?? 0) > 0) wrong.push(`region ${region} told while a write into it ran`);
            told.set(region, (told.get(region) ?? 0) + 1);
          },
        };
        const got = Buffer.alloc(size);
        let target: RestoreTarget;
        if (direct) {
          target = await openFileTarget('a', join(dir, 'regions.img'), size, false);
          const real = source.writeParts.bind(source);
          source.writeParts = async (seg, parts): Promise<number> => {
            const spans = Array.from({ length: parts.length / 4 }, (_v, k) => [parts[k * 4 + 1] as number, parts[k * 4 + 3] as number] as const);
            for (const [o, l] of spans) begin(o, l);
            try {
              return await real(seg, parts);
            } finally {
              for (const [o, l] of spans) end(o, l);
            }
          };
        } else {
          target = {
            volume: 'a', path: 'memory', kind: 'file', fresh: true, tmpPath: null, untouched: null, direct: null,
            async write(offset, data) {
              begin(offset, data.length);
              await tick();
              got.set(data, offset);
              end(offset, data.length);
            },
            zero: async () => undefined,
            clear: async () => undefined,
            finish: async () => undefined,
            abort: async () => undefined,
            release: async () => undefined,
          };
        }
        try {
          await new Applier(cat, planRestore(cat, { kind: 'latest' }), [target], [size], source).coalesced(regions, window);
          await target.finish();
          expect(wrong, `${direct ? 'on the workers' : 'leased'}, window ${window ?? 'whole'}`).toEqual([]);
          expect([...told.entries()].sort((a, b) => a[0] - b[0])).toEqual(Array.from({ length: size / regionBytes }, (_v, r) => [r, 1]));
          expect(events.indexOf('final')).toBeLessThan(events.lastIndexOf('write'));
          expect((direct ? readFileSync(tmpPathFor(join(dir, 'regions.img'))) : got).equals(image)).toBe(true);
        } finally {
          await source.release();
          await target.abort();
          await target.release();
        }
      }
    } finally {
      await pool.close();
      await replica.close();
    }
  });

  it('segments of more tapes than it keeps open, asked for all at once: every read gets an open tape (none closed under a reader), and all are closed after', async () => {
    await replicaOfChangedGroup();
    const replica = await Replica.open(join(dir, 'rep'));
    const pool = new FramePool();
    try {
      const segs = replica.catalog.segments();
      expect(new Set(segs.map((s) => s.serial)).size).toBeGreaterThan(6);
      const source = new SegmentSource(replica, undefined, { pool });
      // Written on the workers (nothing to write: the frame is still read and checked) and leased on this thread.
      const written = await Promise.all(segs.map((s) => source.writeParts(s, new Float64Array(0))));
      expect(written.every((n) => n === 0)).toBe(true);
      const leases = await Promise.all(segs.map((s) => source.lease(s)));
      expect(leases.every((l, i) => l.payload.length > 0 && segs[i] !== undefined)).toBe(true);
      for (const l of leases) l.release();
      await source.release();
      expect(openUnder(join(dir, 'rep')).filter((p) => p.endsWith('.tar.zst'))).toEqual([]);
    } finally {
      await pool.close();
      await replica.close();
    }
  });

  it('a payload\'s memory is used again only after its writes end, whatever the target\'s pace; the tapes it opened are closed after', async () => {
    const image = await replicaOfChangedGroup();
    const size = image.length;
    const replica = await Replica.open(join(dir, 'rep'));
    const pool = new FramePool();
    try {
      const cat = replica.catalog;
      const plan = planRestore(cat, { kind: 'latest' });
      const source = new SegmentSource(replica, undefined, { pool });
      // Each lease asked for after a write began is a chance for the pool to hand a payload's memory to another
      // segment: the slow target copies what it was given only once a later lease is in (or after a bound).
      let leased = 0;
      const waiters: Array<{ after: number; go: () => void }> = [];
      const lease = source.lease.bind(source);
      source.lease = async (seg): Promise<PayloadLease> => {
        const n = ++leased;
        const l = await lease(seg);
        for (const w of waiters.filter((x) => x.after < n)) w.go();
        return l;
      };
      const got = Buffer.alloc(size);
      const target: RestoreTarget = {
        volume: 'a', path: 'memory', kind: 'file', fresh: true, tmpPath: null, untouched: null, direct: null,
        async write(offset, data) {
          await new Promise<void>((go) => {
            const t = setTimeout(go, 200);
            waiters.push({ after: leased, go: () => { clearTimeout(t); go(); } });
          });
          got.set(data, offset);
        },
        zero: async () => undefined,
        clear: async () => undefined,
        finish: async () => undefined,
        abort: async () => undefined,
        release: async () => undefined,
      };
      const apply = new Applier(cat, plan, [target], [size], source);
      await apply.coalesced();
      expect(source.read).toBeGreaterThan(20);
      expect(got.equals(image)).toBe(true);
      expect(openUnder(join(dir, 'rep')).filter((p) => p.endsWith('.tar.zst')).length).toBeGreaterThan(0);
      await source.release();
      expect(openUnder(join(dir, 'rep')).filter((p) => p.endsWith('.tar.zst'))).toEqual([]);
    } finally {
      await pool.close();
      await replica.close();
    }
  });
});
