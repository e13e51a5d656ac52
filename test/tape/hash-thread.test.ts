import { createHash, randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { RecordType, dataCrc, encodeRecord, type RecordHeader } from '../../src/core/record.js';
import { DirDestination } from '../../src/tape/destination.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { SegmentKind } from '../../src/tape/segment.js';
import { HashThread, type StreamHash } from '../../src/tape/hash-thread.js';
import { MediaSetWriter } from '../../src/tape/tape-writer.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { tempDir, toolHash } from '../helpers.js';

const GROUP = '0f3c1d2e-4a5b-4c6d-8e7f-901a2b3c4d5e';

afterEach(() => {
  vi.restoreAllMocks();
});

/** `bytes` in shared memory, at `offset` into a larger SharedArrayBuffer. */
function shared(bytes: Uint8Array, offset = 0): Buffer {
  const b = Buffer.from(new SharedArrayBuffer(offset + bytes.length + 7), offset, bytes.length);
  b.set(bytes);
  return b;
}

describe('a tape\'s hash on its own thread (tape/hash-thread.ts)', () => {
  it('gives node:crypto\'s SHA-256 and b3sum\'s BLAKE3 for streams fed side by side, from shared memory, plain buffers, views and empty chunks', async () => {
    const t = new HashThread();
    try {
      const chunks = [randomBytes(1 << 20), randomBytes(1), Buffer.alloc(0), randomBytes(70_000), Buffer.from('abc')];
      const algorithms = ['sha256', 'blake3', 'sha256', 'blake3'] as const;
      const streams = algorithms.map((a) => t.stream(a));
      const pending: Array<Promise<void>> = [];
      for (const [i, c] of chunks.entries()) {
        for (const [k, s] of streams.entries()) {
          if (k === 2) continue; // the third stays empty
          // Streams 0 and 3 get shared memory; stream 1 views into a larger plain buffer (only the view is hashed).
          const bytes = k !== 1 ? shared(c, i) : Buffer.concat([randomBytes(3), c, randomBytes(5)]).subarray(3, 3 + c.length);
          pending.push(s.update(bytes));
        }
      }
      await Promise.all(pending);
      const all = Buffer.concat(chunks);
      expect(await Promise.all(streams.map((s) => s.digest()))).toEqual([
        createHash('sha256').update(all).digest('hex'), toolHash(all), createHash('sha256').digest('hex'), toolHash(all),
      ]);
      // BLAKE3's own test vector.
      const abc = t.stream('blake3');
      await abc.update(Buffer.from('abc'));
      expect(await abc.digest()).toBe('6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
    } finally {
      await t.close();
    }
  });

  it('reads shared memory where it is (nothing copied or transferred), and hands a copy of anything else over', async () => {
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    const t = new HashThread();
    try {
      const s = t.stream('sha256');
      const sab = shared(randomBytes(4096), 100);
      await s.update(sab);
      const plain = randomBytes(4096);
      await s.update(plain);
      const [first, second] = posted.mock.calls;
      expect(first?.[0]).toMatchObject({ op: 'update', buf: sab.buffer, offset: 100, length: 4096 });
      expect(first?.[1]).toEqual([]);
      // A copy of its own (the caller's buffer stays usable), transferred.
      expect((second?.[0] as { buf: unknown }).buf).not.toBe(plain.buffer);
      expect(second?.[1]).toHaveLength(1);
      expect(plain.buffer.byteLength).toBeGreaterThan(0);
      expect(await s.digest()).toBe(createHash('sha256').update(sab).update(plain).digest('hex'));
    } finally {
      await t.close();
    }
  });

  it('a stream dropped gets no answer, and the streams after it still get theirs', async () => {
    const t = new HashThread();
    try {
      const a = t.stream('sha256');
      await a.update(randomBytes(1000));
      a.drop();
      const b = t.stream('sha256');
      const bytes = randomBytes(5000);
      await b.update(shared(bytes));
      expect(await b.digest()).toBe(createHash('sha256').update(bytes).digest('hex'));
    } finally {
      await t.close();
    }
  });

  it('a thread that fails fails what waits on it and everything after, and a closed one refuses work', async () => {
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    const t = new HashThread();
    const s = t.stream('sha256');
    const waiting = s.update(randomBytes(1 << 20));
    (posted.mock.contexts[0] as Worker).emit('error', new Error('hasher crashed'));
    await expect(waiting).rejects.toThrow('hasher crashed');
    await expect(s.digest()).rejects.toThrow('hasher crashed');
    await t.close();
    const u = new HashThread();
    await u.close();
    await expect(u.stream('sha256').update(randomBytes(10))).rejects.toThrow('closed');
  });
});

describe('a tape is hashed off the main thread as it is written (tape/tape-writer.ts)', () => {
  it('a frame\'s memory goes back to the pool only once it is both written and hashed, however slow the hash', async () => {
    const pool = new FramePool({ threads: 2 });
    const realHash = pool.tapeHash.bind(pool);
    const realFrame = pool.frame.bind(pool);
    const events: string[] = [];
    const ids = new Map<Uint8Array, number>();
    // Every frame named by its buffer; its release recorded.
    vi.spyOn(pool, 'frame').mockImplementation(async (...args) => {
      const f = await realFrame(...args);
      const id = ids.size;
      ids.set(f.buf, id);
      return { ...f, release: () => { events.push(`released ${id}`); f.release(); } };
    });
    // Each hash ends many turns after it was asked for (the write long done by then).
    vi.spyOn(pool, 'tapeHash').mockImplementation((algorithm): StreamHash => {
      const s = realHash(algorithm);
      return {
        ...s,
        update: async (bytes) => {
          for (let t = 0; t < 20; t++) await new Promise((r) => setImmediate(r));
          await s.update(bytes);
          if (ids.has(bytes)) events.push(`hashed ${ids.get(bytes)}`);
        },
      };
    });
    try {
      const w = new MediaSetWriter({ groupId: GROUP, volumes: [{ name: 'v', size: 1 << 30 }], firstSerial: 1, prevSha256: null, destination: new DirDestination(tempDir()), pool, segmentBytes: 64 * 1024 });
      for (let i = 0; i < 80; i++) {
        const data = randomBytes(16 * 1024);
        const header: RecordHeader = {
          type: RecordType.Update, flags: 0, volume: 0, seq: BigInt(i + 1), timestamp: 1_700_000_000_000_000_000n + BigInt(i),
          offset: i * data.length, length: data.length, dataPos: 0n, aux: 0n, dataCrc: dataCrc(data),
        };
        await w.add(SegmentKind.Update, header, encodeRecord(header), data);
      }
      const [t] = await w.finish();
      const released = events.filter((e) => e.startsWith('released')).map((e) => e.split(' ')[1]);
      expect(released.length).toBeGreaterThan(20);
      for (const id of released) expect(events.indexOf(`hashed ${id}`)).toBeLessThan(events.indexOf(`released ${id}`));
      const [v] = await verifyTapes([(t as { location: string }).location], { pool });
      expect(v?.ok).toBe(true);
      expect(v?.sha256).toBe((t as { sha256: string }).sha256);
    } finally {
      await pool.close();
    }
  });
});
