import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { Channel } from '../../src/link/channel.js';
import { LinkDestination } from '../../src/link/link-destination.js';
import { MessageType } from '../../src/link/frame.js';
import { decodeTapeBegin, decodeTapeEnd } from '../../src/link/messages.js';
import { tempDir } from '../helpers.js';
import { destinationContract } from '../tape/destination-contract.js';

/**
 * The direct link as a tape destination, over a loopback socket: the other
 * end plays the secondary's part of the protocol (TAPE_BEGIN, TAPE_DATA
 * frames, TAPE_END with size and SHA-256), and a tape counts as there only
 * once its TAPE_END matches the bytes that came.
 */
describe('tape destinations: the direct link (loopback)', () => {
  const closers: Array<() => void> = [];
  afterAll(() => {
    for (const c of closers) c();
  });

  /** Both ends of a loopback connection, as channels. */
  async function pair(): Promise<{ primary: Channel; secondary: Channel }> {
    const path = join(tempDir(), 'link.sock');
    const server = createServer();
    server.listen(path);
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = connect(path);
    await once(client, 'connect');
    const [socket] = await accepted;
    const primary = new Channel(client, 'secondary');
    const secondary = new Channel(socket, 'primary');
    closers.push(() => {
      primary.destroy();
      secondary.destroy();
      server.close();
    });
    return { primary, secondary };
  }

  it('a chunk is reused as soon as its write resolves, while the secondary reads slowly: every byte arrives as written', async () => {
    const { primary, secondary } = await pair();
    const tape = randomBytes(8 * 1024 * 1024);
    const received: Buffer[] = [];
    const reading = (async () => {
      for (;;) {
        const f = await secondary.next(120_000);
        if (f.type === MessageType.TapeData) received.push(Buffer.from(f.payload));
        if (f.type === MessageType.TapeEnd) return decodeTapeEnd(f);
        // A slow reader: the socket's buffers fill, and writes wait in the primary's queue.
        for (let i = 0; i < 20; i++) await new Promise(setImmediate);
      }
    })();
    const out = await new LinkDestination(primary).open(1, 1n);
    // Smaller than the socket's high-water mark: a write that is only queued resolves at once.
    const chunk = Buffer.alloc(4000);
    for (let off = 0; off < tape.length; off += chunk.length) {
      const n = tape.copy(chunk, 0, off, off + chunk.length);
      await out.write(chunk.subarray(0, n));
      chunk.fill(0xee);
    }
    await out.commit('t', undefined, { sha256: createHash('sha256').update(tape).digest('hex'), bytes: tape.length });
    const end = await reading;
    expect(end.bytes).toBe(tape.length);
    expect(Buffer.concat(received).equals(tape)).toBe(true);
  });

  destinationContract('link (loopback)', async () => {
    const { primary, secondary } = await pair();
    const committed = new Map<string, Buffer>();
    const waiting = new Map<string, (b: Buffer) => void>();
    const dest = new LinkDestination(primary);
    void (async () => {
      let parts: Buffer[] = [];
      for (;;) {
        const f = await secondary.next(120_000).catch(() => undefined);
        if (!f) return;
        if (f.type === MessageType.TapeBegin) {
          decodeTapeBegin(f);
          parts = [];
        } else if (f.type === MessageType.TapeData) {
          parts.push(Buffer.from(f.payload));
        } else if (f.type === MessageType.TapeEnd) {
          const end = decodeTapeEnd(f);
          const bytes = Buffer.concat(parts);
          if (bytes.length === end.bytes && createHash('sha256').update(bytes).digest('hex') === end.sha256) {
            committed.set(dest.where, bytes);
            waiting.get(dest.where)?.(bytes);
          }
        }
      }
    })();
    return {
      dest,
      // The tape is there once the secondary has read its TAPE_END (commit returns once it is sent).
      read: (location) => (committed.has(location) ? Promise.resolve(committed.get(location) as Buffer) : new Promise((resolve) => waiting.set(location, resolve))),
      visible: async () => [...committed.keys()],
      abortLeavesNothing: true,
    };
  });
});
