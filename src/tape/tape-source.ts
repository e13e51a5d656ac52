import { createReadStream, promises as fsp } from 'node:fs';

export const READ_CHUNK = 4 * 1024 * 1024;

/** Where a tape is read from: a file, or an object in a store. */
export interface TapeSource {
  /** For messages: a path or an s3:// URL. */
  readonly where: string;
  /** Reading it costs a transfer (an object store), not a local read. */
  readonly remote?: boolean;
  size(): Promise<number>;
  /** The bytes from `start` through `end` (inclusive), in large chunks. */
  chunks(start?: number, end?: number): AsyncIterable<Buffer>;
}

export function fileSource(path: string): TapeSource {
  return {
    where: path,
    size: async () => (await fsp.stat(path)).size,
    chunks: (start = 0, end) => createReadStream(path, { highWaterMark: READ_CHUNK, start, ...(end !== undefined ? { end } : {}) }) as AsyncIterable<Buffer>,
  };
}

export function asSource(s: string | TapeSource): TapeSource {
  return typeof s === 'string' ? fileSource(s) : s;
}
