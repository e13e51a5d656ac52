import { createReadStream, promises as fsp } from 'node:fs';
import { JshipError } from '../core/errors.js';

export const READ_CHUNK = 4 * 1024 * 1024;

/** Where a tape is read from: a file, or an object in a store. */
export interface TapeSource {
  /** For messages: a path or an s3:// URL. */
  readonly where: string;
  /** Reading it costs a transfer (an object store), not a local read. */
  readonly remote?: boolean;
  size(): Promise<number>;
  /** The bytes from `start` through `end` (inclusive), in large chunks: each the reader's to keep (a source never changes a chunk it yielded, unless the reader gave it back). */
  chunks(start?: number, end?: number): AsyncIterable<Buffer>;
  /**
   * Hands a chunk `chunks()` yielded back to the source, to read later bytes
   * into: for a reader that holds nothing of it any more (no view into it
   * either). Optional on both sides: a reader that never calls it costs the
   * source fresh memory, nothing else.
   */
  giveBack?(chunk: Buffer): void;
}

export function fileSource(path: string): TapeSource {
  // A regular file (or a link to one): a directory or a FIFO named like a tape in a directory of tapes
  // stopped a whole import with EISDIR, or held it forever. A pipe or a drive is named on its own (streamSource).
  let checked: Promise<number> | undefined;
  const regular = (): Promise<number> => (checked ??= fsp.stat(path).then((st) => {
    if (!st.isFile()) {
      throw new JshipError('TAPE_BAD_LABEL', `${path} is ${st.isDirectory() ? 'a directory' : 'not a regular file'}, not a tape file`, {
        hint: 'move it out of the directory of tapes, or name a pipe or a tape drive on its own',
      });
    }
    return st.size;
  }));
  return {
    where: path,
    size: async () => {
      await regular();
      return (await fsp.stat(path)).size;
    },
    chunks: (start = 0, end) => (async function* () {
      await regular();
      yield* createReadStream(path, { highWaterMark: READ_CHUNK, start, ...(end !== undefined ? { end } : {}) }) as AsyncIterable<Buffer>;
    })(),
  };
}

export function asSource(s: string | TapeSource): TapeSource {
  return typeof s === 'string' ? fileSource(s) : s;
}

/** A tape read from a stream: once, from its start. `head` keeps its first bytes for the label. */
export interface StreamSource extends TapeSource {
  head(min: number): Promise<Buffer>;
}

/**
 * A tape arriving on a stream (standard input: a pipe, or a tape drive read
 * with dd): it cannot be read twice, so its first bytes are kept to read the
 * label before the whole tape, and `chunks()` — once — yields them again,
 * then the rest as it comes.
 */
export function streamSource(input: AsyncIterable<Buffer | Uint8Array>, where: string): StreamSource {
  const it = input[Symbol.asyncIterator]();
  const kept: Buffer[] = [];
  let keptLen = 0;
  let ended = false;
  let read = false;
  const next = async (): Promise<Buffer | undefined> => {
    const r = await it.next();
    if (r.done) {
      ended = true;
      return undefined;
    }
    return Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
  };
  return {
    where,
    remote: true,
    size: async () => -1,
    async head(min) {
      while (keptLen < min && !ended) {
        const b = await next();
        if (!b) break;
        kept.push(b);
        keptLen += b.length;
      }
      return Buffer.concat(kept);
    },
    chunks(start = 0, end) {
      if (read || start !== 0 || end !== undefined) throw new Error(`${where} is a stream: it is read once, from its start`);
      read = true;
      return (async function* () {
        yield* kept.splice(0);
        for (let b = ended ? undefined : await next(); b; b = await next()) yield b;
      })();
    },
  };
}
