import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';

import { RecordType, dataCrc, encodeRecord, type RecordHeader } from '../../src/core/record.js';
import { DirDestination, type TapeOutput } from '../../src/tape/destination.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { SegmentKind } from '../../src/tape/segment.js';
import { TapeHash, newHasher, tapeHashOf } from '../../src/tape/tape-hash.js';
import { MediaSetWriter } from '../../src/tape/tape-writer.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { tempDir, toolHash } from '../helpers.js';

const GROUP = '0f3c1d2e-4a5b-4c6d-8e7f-901a2b3c4d5e';

/** `bytes` in shared memory, at `offset` into a larger SharedArrayBuffer (as the frame workers' output is). */
function shared(bytes: Uint8Array, offset = 0): Uint8Array {
  const b = new Uint8Array(new SharedArrayBuffer(offset + bytes.length + 7), offset, bytes.length);
  b.set(bytes);
  return b;
}

describe('a tape\'s hash (tape/tape-hash.ts)', () => {
  it('is SHA-256 up to tape format 4 and BLAKE3 from 5', () => {
    expect([2, 3, 4, 5, 6].map(tapeHashOf)).toEqual(['sha256', 'sha256', 'sha256', 'blake3', 'blake3']);
  });

  it('gives node:crypto\'s SHA-256 and b3sum\'s BLAKE3, fed in chunks of shared memory, views into larger buffers and empty ones', () => {
    const chunks = [randomBytes(1 << 20), randomBytes(1), Buffer.alloc(0), randomBytes(70_000), Buffer.from('abc')];
    const all = Buffer.concat(chunks);
    for (const algorithm of ['sha256', 'blake3'] as const) {
      for (const kind of ['shared', 'view', 'buffer'] as const) {
        const h = newHasher(algorithm);
        for (const [i, c] of chunks.entries()) {
          const big = Buffer.concat([randomBytes(3), c, randomBytes(5)]);
          h.update(kind === 'shared' ? shared(c, i) : kind === 'view' ? new Uint8Array(big.buffer, big.byteOffset + 3, c.length) : c);
        }
        expect(h.digest(), `${algorithm}, ${kind}`).toBe(algorithm === 'sha256' ? createHash('sha256').update(all).digest('hex') : toolHash(all));
      }
    }
    // BLAKE3's own test vector, and the empty input of each.
    const abc = newHasher('blake3');
    abc.update(Buffer.from('abc'));
    expect(abc.digest()).toBe('6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
    expect(newHasher('blake3').digest()).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
    expect(newHasher('sha256').digest()).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('a tape read in chunks is hashed only up to the end of its last frame read, with its label\'s algorithm', () => {
    const bytes = randomBytes(10_000);
    const h = new TapeHash();
    h.add(bytes.subarray(0, 3000));
    h.add(bytes.subarray(3000));
    expect(() => h.upTo(100)).toThrow(/version is not known/);
    h.follow(5);
    h.upTo(4000);
    h.upTo(9000); // padding after 9000 is never hashed
    expect(h.hashed).toBe(9000);
    expect(h.digest()).toBe(toolHash(bytes.subarray(0, 9000)));
    const old = new TapeHash();
    old.add(bytes);
    old.follow(4);
    old.upTo(bytes.length);
    expect(old.digest()).toBe(createHash('sha256').update(bytes).digest('hex'));
  });
});

describe('the writer hashes a tape as it queues its frames (tape/tape-writer.ts)', () => {
  it('a frame\'s memory goes back to the pool only once it is written, however slow the medium; the hash is the file\'s, by b3sum', async () => {
    const pool = new FramePool({ threads: 2 });
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
    // Each write ends many turns after it was asked for.
    const dir = tempDir();
    const dest = new DirDestination(dir);
    const open = dest.open.bind(dest);
    vi.spyOn(dest, 'open').mockImplementation(async (...args) => {
      const out = await open(...args);
      const write = out.write.bind(out);
      return Object.assign(out, {
        write: async (bytes: Buffer) => {
          for (let t = 0; t < 20; t++) await new Promise((r) => setImmediate(r));
          await write(bytes);
          if (ids.has(bytes)) events.push(`written ${ids.get(bytes)}`);
        },
      } satisfies Partial<TapeOutput>);
    });
    try {
      const w = new MediaSetWriter({ groupId: GROUP, volumes: [{ name: 'v', size: 1 << 30 }], firstSerial: 1, prevSha256: null, destination: dest, pool, segmentBytes: 64 * 1024 });
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
      for (const id of released) expect(events.indexOf(`written ${id}`), `frame ${id}`).toBeGreaterThanOrEqual(0);
      for (const id of released) expect(events.indexOf(`written ${id}`)).toBeLessThan(events.indexOf(`released ${id}`));
      const location = (t as { location: string }).location;
      const [v] = await verifyTapes([location], { pool });
      expect(v?.ok).toBe(true);
      expect(v?.label?.version).toBe(5);
      expect((t as { sha256: string }).sha256).toBe(toolHash(location));
      expect(v?.sha256).toBe((t as { sha256: string }).sha256);
    } finally {
      await pool.close();
    }
  });
});
