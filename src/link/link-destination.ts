import type { TapeDestination, TapeOutput } from '../tape/destination.js';
import type { Channel } from './channel.js';
import { DATA_CHUNK, MessageType, encodeFrameHeader } from './frame.js';
import { message } from './messages.js';

/**
 * Tapes written into a link connection: TAPE_BEGIN, the tape's bytes in
 * TAPE_DATA frames, TAPE_END with its size and hash. Nothing is durable
 * here: the tape counts once the secondary confirms it.
 */
export class LinkDestination implements TapeDestination {
  readonly where: string;
  readonly durable = false;
  readonly splittable = false;
  readonly #ch: Channel;

  constructor(ch: Channel) {
    this.#ch = ch;
    this.where = `link to ${ch.peer}`;
  }

  async open(serial: number, firstSeq: bigint): Promise<TapeOutput> {
    const ch = this.#ch;
    await ch.send(message(MessageType.TapeBegin, { serial, firstSeq: firstSeq.toString() }));
    return {
      write: async (chunk: Buffer) => {
        for (let off = 0; off < chunk.length; off += DATA_CHUNK) {
          const piece = chunk.subarray(off, off + DATA_CHUNK);
          // The writer reuses the chunk's memory once this returns: it returns once the socket has written it.
          await ch.send([encodeFrameHeader(MessageType.TapeData, piece), piece], { written: off + DATA_CHUNK >= chunk.length });
        }
      },
      commit: async (_name: string, beforeRename?: (finalPath: string) => Promise<void>, tape?: { sha256: string; bytes: number }) => {
        if (!tape) throw new Error('LinkDestination.commit needs the tape\'s hash and size');
        await beforeRename?.(this.where);
        await ch.send(message(MessageType.TapeEnd, { serial, bytes: tape.bytes, sha256: tape.sha256 }));
        return this.where;
      },
      // The connection is closed by the session; the secondary drops the partial tape.
      abort: async () => undefined,
    };
  }
}
