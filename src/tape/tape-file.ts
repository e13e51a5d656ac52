import { createReadStream, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { decompress } from 'zstd-napi';
import { JshipError, isJshipError } from '../core/errors.js';
import { ZSTD_MAGIC, scanFrame } from '../core/zstd-frames.js';
import { TRAILER_NAME, decodeTrailer, type TapeLabel, type TapeTrailer } from './label.js';
import { readTape } from './tape-reader.js';
import { decodeEntries } from './tar-entry.js';

export const READ_CHUNK = 4 * 1024 * 1024;

/** Streams a file in large chunks (the reader cuts frames out of them). */
export function fileChunks(path: string, start = 0, end?: number): AsyncIterable<Buffer> {
  return createReadStream(path, { highWaterMark: READ_CHUNK, start, ...(end !== undefined ? { end } : {}) }) as AsyncIterable<Buffer>;
}

/** The tape files named: files as they are, directories by their *.tar.zst files in name order. */
export async function expandTapeSources(sources: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of sources) {
    let st;
    try {
      st = await fsp.stat(s);
    } catch (e) {
      throw new JshipError('USAGE', `${s}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`, { hint: 'name tape files or directories holding them' });
    }
    if (st.isDirectory()) {
      const names = (await fsp.readdir(s)).filter((n) => n.endsWith('.tar.zst') && !n.startsWith('.')).sort();
      out.push(...names.map((n) => join(s, n)));
    } else {
      out.push(s);
    }
  }
  return out;
}

/** Reads only a tape's label (the first frame). */
export async function readLabel(path: string): Promise<TapeLabel> {
  const gen = readTape(fileChunks(path, 0, 1024 * 1024 - 1), { where: path, structureOnly: true });
  try {
    for await (const item of gen) if (item.type === 'label') return item.label;
  } catch (e) {
    if (!isJshipError(e, 'TAPE_TRUNCATED')) throw e;
  } finally {
    await gen.return(undefined);
  }
  throw new JshipError('TAPE_BAD_LABEL', `${path}: no jship label in its first MiB`, { hint: 'this is not a jship tape, or its beginning is damaged' });
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of fileChunks(path)) h.update(c);
  return h.digest('hex');
}

/**
 * Looks for the trailer near the end of a damaged tape, so that a report can
 * say exactly which segments were lost: tries each zstd frame start in the
 * last few MiB until one decodes to the trailer entry.
 */
export async function findTrailer(path: string): Promise<TapeTrailer | undefined> {
  const st = await fsp.stat(path);
  const span = Math.min(st.size, 8 * 1024 * 1024);
  const h = await fsp.open(path, 'r');
  const buf = Buffer.alloc(span);
  try {
    await h.read(buf, 0, span, st.size - span);
  } finally {
    await h.close();
  }
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(ZSTD_MAGIC);
  for (let i = buf.lastIndexOf(magic); i >= 0; i = i === 0 ? -1 : buf.lastIndexOf(magic, i - 1)) {
    const s = scanFrame(buf, i);
    if (s.kind !== 'frame') continue;
    try {
      const [entry] = await decodeEntries(decompress(buf.subarray(i, i + s.length)), path);
      if (entry?.name === TRAILER_NAME) return decodeTrailer(entry.content, `${path} trailer`);
    } catch {
      // not it: keep looking
    }
  }
  return undefined;
}
