import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { OnReadOpts } from 'node:net';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FRAME_HEADER, MAX_PAYLOAD, MessageType, encodeFrame, encodeFrameHeader, type Frame } from '../../src/link/frame.js';
import { FrameReads } from '../../src/link/frame-reads.js';
import { Channel } from '../../src/link/channel.js';
import { clientOptions, serverOptions } from '../../src/link/link-tls.js';
import { JshipError } from '../../src/core/errors.js';

/**
 * Plays the socket's part of `onread`: each read asks FrameReads for a
 * buffer, fills at most that much of it from `bytes` (as many as `sizes`
 * says, in turn), and reports how many it wrote.
 */
function feed(reads: FrameReads, bytes: Buffer, sizes: number[]): void {
  let at = 0;
  let i = 0;
  while (at < bytes.length) {
    const into = reads.onread.buffer();
    expect(into.length).toBeGreaterThan(0);
    const n = Math.min(into.length, bytes.length - at, Math.max(1, sizes.length > 0 ? (sizes[i++ % sizes.length] as number) : into.length));
    bytes.copy(into, 0, at, at + n);
    at += n;
    reads.onread.callback(n);
  }
}

const TYPES = [1, 3, 4, 5, 6, 7, 8];
const BIG = 64 * 1024;

describe('link frames read into their own memory (FrameReads)', () => {
  it('cuts the same frames as FrameReader, however the reads fall, and a frame given back is read into again without touching those held (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({
        type: fc.oneof(fc.constant(MessageType.TapeData as number), fc.constantFrom(...TYPES)),
        // Small payloads, and long ones: a TAPE_DATA one of 64 KiB or more is lent.
        length: fc.oneof(fc.nat({ max: 3000 }), fc.integer({ min: BIG, max: BIG + 5000 })),
        seed: fc.nat(255),
        giveBack: fc.boolean(),
      }), { maxLength: 14 }),
      fc.array(fc.integer({ min: 1, max: 70_000 }), { maxLength: 6 }),
      (list, sizes) => {
        const payloads = list.map((f) => Buffer.alloc(f.length, f.seed));
        const bytes = Buffer.concat(list.map((f, i) => encodeFrame(f.type as MessageType, payloads[i])));
        const reads = new FrameReads();
        const got: Frame[] = [];
        reads.attach({
          frame: (f) => {
            const i = got.length;
            got.push(f);
            // A given-back payload is spoiled at once: any frame still reading from its memory would show it.
            if (list[i]?.giveBack) {
              reads.giveBack(f.payload);
              f.payload.fill(0xee);
            }
            return true;
          },
          fail: (e) => { throw e; },
        });
        feed(reads, bytes, sizes);
        expect(got.map((f) => f.type)).toEqual(list.map((f) => f.type));
        got.forEach((f, i) => {
          expect(f.payload.length).toBe(payloads[i]?.length);
          if (!list[i]?.giveBack) expect(f.payload.equals(payloads[i] as Buffer)).toBe(true);
        });
      },
    ));
  });

  it('reads a lent payload into a buffer given back before, and nothing else', () => {
    const reads = new FrameReads();
    const got: Frame[] = [];
    reads.attach({ frame: (f) => got.push(f) > 0, fail: (e) => { throw e; } });
    const big = (seed: number): Buffer => encodeFrame(MessageType.TapeData, Buffer.alloc(MAX_PAYLOAD, seed));
    feed(reads, big(1), []);
    const first = got[0]?.payload as Buffer;
    feed(reads, big(2), []);
    // (Compared as booleans: a failed toBe on 4 MiB buffers takes vitest seconds to print.)
    expect(got[1]?.payload.buffer === first.buffer).toBe(false);
    // A view at an offset, a copy and a small payload are not the lent memory: ignored.
    reads.giveBack(first.subarray(1));
    reads.giveBack(Buffer.from(first));
    feed(reads, big(3), []);
    expect(got[2]?.payload.buffer === first.buffer).toBe(false);
    reads.giveBack(first);
    reads.giveBack(first); // twice: once counts
    feed(reads, Buffer.concat([big(4), big(5)]), []);
    expect(got[3]?.payload.buffer === first.buffer).toBe(true);
    expect(got[4]?.payload.buffer === first.buffer).toBe(false);
    expect(got[3]?.payload.every((b) => b === 4)).toBe(true);
    expect(got[1]?.payload.every((b) => b === 2)).toBe(true);
    // A buffer is read into again by a payload of its size class (the next power of two): 1 MiB for 600 KiB, not for 3 MiB.
    feed(reads, encodeFrame(MessageType.TapeData, Buffer.alloc(1024 * 1024, 8)), []);
    const mib = got[5]?.payload as Buffer;
    reads.giveBack(mib);
    feed(reads, encodeFrame(MessageType.TapeData, Buffer.alloc(3 * 1024 * 1024, 9)), []);
    feed(reads, encodeFrame(MessageType.TapeData, Buffer.alloc(600 * 1024, 10)), []);
    expect(got[6]?.payload.buffer === mib.buffer).toBe(false);
    expect(got[7]?.payload.buffer === mib.buffer).toBe(true);
    expect(got[6]?.payload.every((b) => b === 9) && got[7]?.payload.every((b) => b === 10)).toBe(true);
    got.splice(5);
    // Only TAPE_DATA is lent: a long frame of another type has memory of its own, never read into again.
    feed(reads, encodeFrame(MessageType.Status, Buffer.alloc(MAX_PAYLOAD, 6)), []);
    const status = got[5]?.payload as Buffer;
    reads.giveBack(status);
    feed(reads, big(7), []);
    expect(got[6]?.payload.buffer === status.buffer).toBe(false);
    expect(status.every((b) => b === 6)).toBe(true);
  });

  it('keeps frames that come before the channel is attached, and stops reading when the sink says so', () => {
    const reads = new FrameReads();
    feed(reads, Buffer.concat([encodeFrame(MessageType.Idle), encodeFrame(MessageType.Read, Buffer.from('{"waitMs":0}'))]), [5]);
    const got: Frame[] = [];
    reads.attach({ frame: (f) => got.push(f) < 3, fail: (e) => { throw e; } });
    expect(got.map((f) => f.type)).toEqual([MessageType.Idle, MessageType.Read]);
    const results: boolean[] = [];
    const bytes = encodeFrame(MessageType.Idle);
    for (let at = 0; at < bytes.length; at += 4) {
      const into = reads.onread.buffer();
      bytes.copy(into, 0, at, at + 4);
      results.push(reads.onread.callback(4));
    }
    // The header's last read completes the third frame: the sink asked to stop there.
    expect(results).toEqual([true, true, true, false]);
  });

  it('refuses what FrameReader refuses, and reads nothing more after', () => {
    const good = encodeFrame(MessageType.Read, Buffer.from('{"waitMs":0}'));
    const failure = (mutate: (b: Buffer) => void): JshipError => {
      const b = Buffer.from(good);
      mutate(b);
      const reads = new FrameReads();
      const failures: unknown[] = [];
      reads.attach({ frame: () => true, fail: (e) => failures.push(e) });
      let at = 0;
      let more = true;
      while (more && at < b.length) {
        const into = reads.onread.buffer();
        const n = Math.min(into.length, b.length - at);
        b.copy(into, 0, at, at + n);
        at += n;
        more = reads.onread.callback(n);
      }
      expect(more).toBe(false);
      expect(reads.onread.callback(1)).toBe(false);
      expect(failures).toHaveLength(1);
      return failures[0] as JshipError;
    };
    expect(failure((b) => { b[0] = 0x58; }).message).toMatch(/bad frame magic/);
    expect(failure((b) => { b[4] = 2; }).code).toBe('LINK_VERSION');
    expect(failure((b) => { b[5] = 99; }).message).toMatch(/unknown message type 99/);
    expect(failure((b) => { b.writeUInt32LE(MAX_PAYLOAD + 1, 8); }).message).toMatch(/larger than the limit/);
    expect(failure((b) => { b[FRAME_HEADER + 3] = (b[FRAME_HEADER + 3] as number) ^ 1; }).message).toMatch(/CRC mismatch in a Read frame/);
  });
});

describe('a dialed channel (TLS-PSK on loopback)', () => {
  const servers: tls.Server[] = [];
  afterAll(() => {
    for (const s of servers) s.close();
  });

  it('stops reading while 8 frames wait, resumes as they are taken, and hands on every frame intact, payloads given back and read into again', async () => {
    const key = randomBytes(32);
    const FRAMES = 40;
    const payload = (i: number): Buffer => Buffer.alloc(MAX_PAYLOAD - (i % 3) * 1000, i);
    const server = tls.createServer(serverOptions(key, () => true), (s) => {
      for (let i = 0; i < FRAMES; i++) {
        const p = payload(i);
        s.write(encodeFrameHeader(MessageType.TapeData, p));
        s.write(p);
      }
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    // Dialed as dial() does, with the read callback watched: the reader takes frames only once the channel stopped reading.
    const reads = new FrameReads();
    const read = reads.onread.callback;
    let stopped: () => void = () => undefined;
    const stop = new Promise<void>((r) => { stopped = r; });
    reads.onread.callback = (n: number): boolean => {
      const more = read(n);
      if (!more) stopped();
      return more;
    };
    const options: tls.ConnectionOptions & { onread: OnReadOpts } = { host: '127.0.0.1', port: (server.address() as { port: number }).port, ...clientOptions(key, 'g'), onread: reads.onread };
    const socket = tls.connect(options);
    await once(socket, 'secureConnect');
    const ch = new Channel(socket, 'test', reads);
    try {
      await stop;
      const seen = new Set<ArrayBufferLike>();
      for (let i = 0; i < FRAMES; i++) {
        const f = await ch.next(30_000);
        const want = payload(i);
        expect(f.type).toBe(MessageType.TapeData);
        expect(f.payload.length === want.length && f.payload.equals(want)).toBe(true);
        seen.add(f.payload.buffer);
        ch.giveBack(f.payload);
      }
      // The frames after the stop came once the socket was resumed; far fewer buffers than frames were read into.
      expect(seen.size).toBeLessThan(FRAMES / 2);
    } finally {
      ch.destroy();
    }
  });
});
