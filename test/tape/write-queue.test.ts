import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { RecordType, dataCrc, encodeRecord, type RecordHeader } from '../../src/core/record.js';
import { DirDestination, type TapeDestination, type TapeOutput } from '../../src/tape/destination.js';
import { FramePool, WORKER_DEPTH } from '../../src/tape/frame-pool.js';
import { SegmentKind } from '../../src/tape/segment.js';
import { MediaSetWriter } from '../../src/tape/tape-writer.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { tempDir } from '../helpers.js';
import { rec, tapeRecords, type Rec } from './helpers.js';

const GROUP = '0f3c1d2e-4a5b-4c6d-8e7f-901a2b3c4d5e';

afterEach(() => {
  vi.restoreAllMocks();
});

/** Record i of a run: `bytes` random bytes at block i. */
function record(i: number, bytes: number): { header: RecordHeader; data: Buffer } {
  const data = randomBytes(bytes);
  const header: RecordHeader = {
    type: RecordType.Update, flags: 0, volume: 0, seq: BigInt(i + 1), timestamp: 1_700_000_000_000_000_000n + BigInt(i),
    offset: i * bytes, length: data.length, dataPos: 0n, aux: 0n, dataCrc: dataCrc(data),
  };
  return { header, data };
}

/**
 * A directory destination whose writes end after a random number of turns of
 * the event loop (so that the writer runs ahead of them), recording each
 * write's start and end; `fail` makes the n-th write (label first), or the
 * commit, fail.
 */
function slowDir(dir: string, fail?: number | 'commit'): { dest: TapeDestination; events: string[]; aborted: () => number } {
  const inner: TapeDestination = new DirDestination(dir);
  const events: string[] = [];
  let n = 0;
  let aborts = 0;
  const dest: TapeDestination = {
    where: inner.where, durable: inner.durable, splittable: inner.splittable,
    async open(...tape) {
      const out = await inner.open(...tape);
      const wrapped: TapeOutput = {
        async write(chunk) {
          const i = ++n;
          events.push(`start ${i}`);
          for (let t = randomBytes(1)[0] as number % 8; t > 0; t--) await new Promise((r) => setImmediate(r));
          if (i === fail) {
            events.push(`fail ${i}`);
            throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
          }
          await out.write(chunk);
          events.push(`end ${i}`);
        },
        async commit(name, before, tape) {
          if (fail === 'commit') throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
          return out.commit(name, before, tape);
        },
        async abort() {
          aborts++;
          await out.abort();
        },
      };
      return wrapped;
    },
  };
  return { dest, events, aborted: () => aborts };
}

/** Writes `count` records of 16 KiB in 64 KiB segments to `dest`; throws what the writer threw, after abort(). */
async function write(dest: TapeDestination, count: number): Promise<void> {
  const pool = new FramePool({ threads: 2 });
  const w = new MediaSetWriter({ groupId: GROUP, volumes: [{ name: 'v', size: 1 << 30 }], firstSerial: 1, prevSha256: null, destination: dest, pool, segmentBytes: 64 * 1024 });
  try {
    for (let i = 0; i < count; i++) {
      const r = record(i, 16 * 1024);
      await w.add(SegmentKind.Update, r.header, encodeRecord(r.header), r.data);
    }
    await w.finish();
  } catch (e) {
    await w.abort();
    throw e;
  } finally {
    await pool.close();
  }
}

describe('the tape writer queues frame writes (tape/tape-writer.ts)', () => {
  it('writes frames one at a time, in order, while it goes on sealing: the tape verifies and holds every record', async () => {
    const dir = tempDir();
    const { dest, events } = slowDir(dir);
    const pool = new FramePool({ threads: 2 });
    const want: Rec[] = [];
    try {
      // Small segments: many frames queued behind slow writes.
      const w = new MediaSetWriter({ groupId: GROUP, volumes: [{ name: 'v', size: 1 << 30 }], firstSerial: 1, prevSha256: null, destination: dest, pool, segmentBytes: 64 * 1024 });
      for (let i = 0; i < 120; i++) {
        const r = record(i, 4096 + (i % 7) * 4096);
        want.push(rec(r));
        await w.add(SegmentKind.Update, r.header, encodeRecord(r.header), r.data);
      }
      const [t] = await w.finish();
      const [v] = await verifyTapes([(t as { location: string }).location], { pool });
      expect(v?.ok).toBe(true);
      expect(v?.sha256).toBe((t as { sha256: string }).sha256);
      expect((await tapeRecords((t as { location: string }).location)).updates).toEqual(want);
    } finally {
      await pool.close();
    }
    // Each write started only after the one before it ended.
    const writes = events.length / 2;
    expect(writes).toBeGreaterThan(20);
    expect(events).toEqual(Array.from({ length: writes }, (_v, k) => [`start ${k + 1}`, `end ${k + 1}`]).flat());
  });

  it('a queued write that fails fails the export: no later write starts, and the tape is removed', async () => {
    const dir = tempDir();
    const { dest, events, aborted } = slowDir(dir, 6);
    await expect(write(dest, 60)).rejects.toMatchObject({ code: 'EIO' });
    expect(events[events.length - 1]).toBe('fail 6');
    expect(events.filter((e) => e.startsWith('start'))).toHaveLength(6);
    expect(aborted()).toBe(1);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });
});

describe('a tape whose close fails is removed (tape/tape-writer.ts)', () => {
  it('the trailer\'s write failing: the export fails and the partial tape is aborted', async () => {
    const ok = slowDir(tempDir());
    await write(ok.dest, 12);
    const writes = ok.events.filter((e) => e.startsWith('start')).length; // label, segments, trailer
    const dir = tempDir();
    const bad = slowDir(dir, writes);
    await expect(write(bad.dest, 12)).rejects.toMatchObject({ code: 'EIO' });
    expect(bad.events[bad.events.length - 1]).toBe(`fail ${writes}`);
    expect(bad.aborted()).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('its commit failing: the export fails and the partial tape is aborted', async () => {
    const dir = tempDir();
    const bad = slowDir(dir, 'commit');
    await expect(write(bad.dest, 12)).rejects.toMatchObject({ code: 'EIO' });
    expect(bad.aborted()).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('frame workers are given two jobs at once (tape/frame-pool.ts)', () => {
  it('a worker has its next job before it answers the one it works on, and each answer goes to its own job', async () => {
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    const pool = new FramePool({ threads: 1 });
    try {
      const contents = Array.from({ length: 5 }, (_v, i) => randomBytes(200_000 + i * 1000));
      const frames = contents.map((c, i) => pool.frame(`e${i}`, [c], { mtime: new Date(0) }));
      // All submitted in this turn: the one worker was handed two, the rest wait.
      expect(posted).toHaveBeenCalledTimes(WORKER_DEPTH);
      for (const [i, f] of frames.entries()) {
        const { buf, release } = await f;
        const u = await pool.unframe(buf);
        expect(u.entries.map((e) => e.name)).toEqual([`e${i}`]);
        expect(Buffer.compare(u.entries[0]?.content as Buffer, contents[i] as Buffer)).toBe(0);
        release();
      }
    } finally {
      await pool.close();
    }
  });

  it('a worker that fails is dropped: its job fails, later jobs go to the other, and with none left a job fails at once instead of waiting', async () => {
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    const pool = new FramePool({ threads: 2 });
    const content = randomBytes(100_000);
    const frame = (name: string): ReturnType<FramePool['frame']> => pool.frame(name, [content], { mtime: new Date(0) });
    try {
      const a = frame('a');
      const wa = posted.mock.contexts[0] as Worker;
      wa.emit('error', new Error('worker A crashed'));
      await expect(a).rejects.toThrow('worker A crashed');
      for (let i = 0; i < 4; i++) (await frame(`b${i}`)).release();
      const later = posted.mock.contexts.slice(1) as Worker[];
      expect(later).toHaveLength(4);
      expect(later.every((w) => w !== wa)).toBe(true);
      const c = frame('c');
      (posted.mock.contexts[5] as Worker).emit('error', new Error('worker B crashed'));
      await expect(c).rejects.toThrow('worker B crashed');
      await expect(frame('d')).rejects.toThrow('worker B crashed');
    } finally {
      await pool.close();
    }
  });
});
