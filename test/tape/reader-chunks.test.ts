import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { setImmediate as tick } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FramePool } from '../../src/tape/frame-pool.js';
import { readTape, type ReadTapeOptions } from '../../src/tape/tape-reader.js';
import { tempDir } from '../helpers.js';
import { exportTo, groupWithData, tapesDir } from './helpers.js';

/** What a reader yields of a tape, without the offsets' bookkeeping: labels, segments' records, trailer; or the error's code. */
async function read(chunks: AsyncIterable<Buffer>, pool?: FramePool, more: Partial<ReadTapeOptions> = {}): Promise<unknown> {
  const out: unknown[] = [];
  try {
    for await (const it of readTape(chunks, { where: 't', ...(pool ? { pool } : {}), ...more })) {
      out.push(it.type === 'segment' ? { info: it.info, offset: it.offset, length: it.length, records: it.records.map((r) => [r.header.seq, r.data.toString('base64')]) } : it);
    }
  } catch (e) {
    out.push({ error: (e as { code?: string }).code ?? (e as Error).message });
  }
  return out;
}

/** The bytes in chunks of the given sizes (cycled), each a buffer of its own. */
async function* chunked(b: Buffer, sizes: number[]): AsyncIterable<Buffer> {
  let at = 0;
  for (let i = 0; at < b.length; i++) {
    const n = Math.min(b.length - at, sizes[i % sizes.length] as number);
    const c = Buffer.from(b.subarray(at, at + n));
    yield c;
    at += n;
  }
}

describe('the tape reader cuts frames across any chunking', () => {
  const dir = tempDir();

  it('any chunk sizes (a frame cut by a chunk\'s end, joined with part of the next) read as the whole file does', async () => {
    const { group } = await groupWithData(dir, 600);
    // Small segments: many frames, each a few KiB to tens of KiB, cut by chunk ends at every place.
    await exportTo(group, tapesDir(dir), { segmentBytes: 24 * 1024 });
    await group.close();
    const file = join(tapesDir(dir), readdirSync(tapesDir(dir)).find((f) => f.endsWith('.tar.zst')) as string);
    const tape = readFileSync(file);
    expect(tape.length).toBeGreaterThan(400 * 1024);
    const pool = new FramePool({ threads: 1 });
    try {
      const whole = await read(chunked(tape, [tape.length]));
      expect((whole as Array<{ error?: string }>).some((x) => x.error)).toBe(false);
      expect(await read(chunked(tape, [tape.length]), pool)).toEqual(whole);
      await fc.assert(fc.asyncProperty(
        fc.array(fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 60 * 1024, max: 400 * 1024 })), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (sizes, usePool) => {
          expect(await read(chunked(tape, sizes), usePool ? pool : undefined)).toEqual(whole);
        },
      ), { numRuns: 40 });
      // Chunks given back (a store's range buffers, read into again) are spoilt at once: had one been given back
      // while a frame cut from it waited, or while its onBytes call ran (it reads the chunk after a turn of the
      // event loop), the records or the bytes handed on would differ.
      const sha = createHash('sha256').update(tape).digest('hex');
      // Chunks that end where frames end, too: nothing of such a chunk is left unread once its frames are handled.
      const frames = (whole as Array<{ offset?: number; length?: number }>).filter((x) => x.length !== undefined).map((x) => x.length as number);
      expect(frames.length).toBeGreaterThan(10);
      await fc.assert(fc.asyncProperty(
        fc.oneof(
          fc.array(fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 60 * 1024, max: 400 * 1024 })), { minLength: 1, maxLength: 8 }),
          fc.constant(frames),
        ),
        fc.boolean(),
        async (sizes, usePool) => {
          const given = new Set<Buffer>();
          let yielded = 0;
          const counted = async function* (): AsyncIterable<Buffer> {
            for await (const c of chunked(tape, sizes)) {
              yielded++;
              yield c;
            }
          };
          const h = createHash('sha256');
          const got = await read(counted(), usePool ? pool : undefined, {
            onBytes: async (c) => {
              await tick();
              h.update(c);
            },
            giveBack: (c) => {
              expect(given.has(c)).toBe(false);
              given.add(c);
              c.fill(0xee);
            },
          });
          expect(got).toEqual(whole);
          expect(h.digest('hex')).toBe(sha);
          // All but the chunks that hold the tape's last frames (the trailer, the end of the archive).
          expect(given.size).toBeGreaterThan(0);
          expect(given.size).toBeGreaterThanOrEqual(yielded - Math.ceil(64 * 1024 / Math.min(...sizes)) - 8);
        },
      ), { numRuns: 40 });
      // A byte changed: the same error whichever the chunking.
      const bad = Buffer.from(tape);
      bad[bad.length >> 1] = (bad[bad.length >> 1] as number) ^ 0xff;
      const expected = await read(chunked(bad, [bad.length]));
      expect((expected as Array<{ error?: string }>).pop()).toEqual({ error: 'TAPE_DAMAGED' });
      for (const sizes of [[70 * 1024], [100 * 1024, 3], [333 * 1024]]) expect(await read(chunked(bad, sizes), pool)).toEqual(await read(chunked(bad, [bad.length]), pool));
    } finally {
      await pool.close();
    }
  }, 180_000);
});
