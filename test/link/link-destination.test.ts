import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe } from 'vitest';

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

  destinationContract('link (loopback)', async () => {
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
