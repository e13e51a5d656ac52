import { createReadStream, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { JshipError, isJshipError } from '../core/errors.js';
import { ZSTD_MAGIC, frameSizeProblem, scanFrame } from '../core/zstd-frames.js';
import { TRAILER_NAME, decodeTrailer, type TapeLabel, type TapeTrailer } from './label.js';
import { readTape } from './tape-reader.js';
import { frameEntries } from './tar-entry.js';
import { newHasher, tapeHashOf } from './tape-hash.js';
import { asSource, fileSource, streamSource, type StreamSource, type TapeSource } from './tape-source.js';
import { isStoreUrl, storeFor, type StoreSettings } from './stores.js';

/** Streams a file in large chunks (the reader cuts frames out of them). */
export function fileChunks(path: string, start = 0, end?: number): AsyncIterable<Buffer> {
  return fileSource(path).chunks(start, end);
}

/**
 * The tapes named: files as they are, directories by their *.tar.zst files
 * in name order, s3:// URLs as one tape object or every tape under a prefix,
 * a tape drive (character device) or FIFO as one tape read as a stream in
 * reads of `blockSize` (a drive in fixed-block mode wants whole blocks).
 */
export async function expandTapeSources(sources: string[], s3: StoreSettings = {}, blockSize = 64 * 1024): Promise<TapeSource[]> {
  const out: TapeSource[] = [];
  for (const s of sources) {
    if (isStoreUrl(s)) {
      out.push(...(await storeFor(s).sources(s, s3)));
      continue;
    }
    if (s === '-') {
      if (sources.filter((x) => x === '-').length > 1) throw new JshipError('USAGE', 'standard input (-) can be named once', { hint: 'one tape per pipe' });
      out.push(streamSource(process.stdin, 'standard input'));
      continue;
    }
    let st;
    try {
      st = await fsp.stat(s);
    } catch (e) {
      throw new JshipError('USAGE', `${s}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`, { hint: 'name tape files or directories holding them' });
    }
    if (st.isBlockDevice()) {
      throw new JshipError('USAGE', `${s} is a block device: jship reads tapes from files, directories of them, tape drives (character devices), FIFOs and object storage`, {
        hint: 'to read tapes carried on a disk, mount its file system and name the directory of tapes on it',
      });
    }
    if (st.isCharacterDevice() || st.isFIFO()) {
      out.push(streamSource(createReadStream(s, { highWaterMark: blockSize }), s));
      continue;
    }
    if (st.isDirectory()) {
      // Tapes are files (or links to files): anything else named like one is not read.
      const names = (await fsp.readdir(s)).filter((n) => n.endsWith('.tar.zst') && !n.startsWith('.')).sort();
      for (const n of names) if ((await fsp.stat(join(s, n)).catch(() => undefined))?.isFile()) out.push(fileSource(join(s, n)));
    } else {
      out.push(fileSource(s));
    }
  }
  return out;
}

/** A label's frame is a few KiB: its first 64 KiB hold it unless it lists very many volumes. */
const LABEL_FIRST_READ = 64 * 1024;
/** How far into a tape its label is looked for. */
const LABEL_MAX_READ = 1024 * 1024;

/**
 * Reads only a tape's label (the first frame, within the first MiB): its
 * first 64 KiB, and the first MiB only when the label is not within them (an
 * import or a catalogue rebuild reads the label of every tape).
 */
export async function readLabel(source: string | TapeSource): Promise<TapeLabel> {
  const src = asSource(source);
  if ('head' in src) return labelOf(await (src as StreamSource).head(LABEL_MAX_READ), src.where);
  const size = await src.size();
  if (size === 0) throw new JshipError('TAPE_BAD_LABEL', `${src.where}: empty`, { hint: 'this is not a jship tape, or it was cut off at its start' });
  const first = Math.min(size, LABEL_FIRST_READ);
  try {
    return await labelOf(await bytesOf(src, 0, first - 1), src.where);
  } catch (e) {
    if (first === size || !isJshipError(e, 'TAPE_BAD_LABEL')) throw e;
  }
  return labelOf(await bytesOf(src, 0, Math.min(size, LABEL_MAX_READ) - 1), src.where);
}

/** Bytes `start` through `end` (inclusive) of a source, in one buffer. */
async function bytesOf(src: TapeSource, start: number, end: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src.chunks(start, end)) parts.push(c);
  return Buffer.concat(parts);
}

/** A tape's label from its first bytes (the label frame, as a writer writes it first and alone). */
export async function labelOf(first: Buffer, where: string): Promise<TapeLabel> {
  const gen = readTape((async function* () { yield first; })(), { where, structureOnly: true });
  try {
    for await (const item of gen) if (item.type === 'label') return item.label;
  } catch (e) {
    if (!isJshipError(e, 'TAPE_TRUNCATED')) throw e;
  } finally {
    await gen.return(undefined);
  }
  throw new JshipError('TAPE_BAD_LABEL', `${where}: no jship label in its first ${first.length} bytes`, { hint: 'this is not a jship tape, or its beginning is damaged' });
}

/**
 * The hash of a whole tape file (tape/tape-hash.ts): the algorithm of
 * format `version`, or of the version its own label names.
 */
export async function tapeHashFile(source: string | TapeSource, version?: number): Promise<string> {
  const src = asSource(source);
  const h = newHasher(tapeHashOf(version ?? (await readLabel(src)).version));
  for await (const c of src.chunks()) h.update(c);
  return h.digest();
}

/**
 * Looks for the trailer near the end of a damaged tape, so that a report can
 * say exactly which segments were lost: tries each zstd frame start in the
 * last few MiB until one decodes to the trailer entry.
 */
export async function findTrailer(source: string | TapeSource): Promise<TapeTrailer | undefined> {
  return (await findTrailerFrame(source))?.trailer;
}

/** The trailer found near the end of a tape, and where its frame lies. */
export async function findTrailerFrame(source: string | TapeSource): Promise<{ trailer: TapeTrailer; offset: number; length: number } | undefined> {
  const src = asSource(source);
  const path = src.where;
  const size = await src.size();
  const span = Math.min(size, 8 * 1024 * 1024);
  if (span <= 0) return undefined; // empty, or a stream of unknown size
  const buf = await bytesOf(src, size - span, size - 1);
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(ZSTD_MAGIC);
  for (let i = buf.lastIndexOf(magic); i >= 0; i = i === 0 ? -1 : buf.lastIndexOf(magic, i - 1)) {
    const s = scanFrame(buf, i);
    if (s.kind !== 'frame' || frameSizeProblem(s)) continue;
    try {
      const [entry] = await frameEntries(buf.subarray(i, i + s.length), path);
      if (entry?.name === TRAILER_NAME) return { trailer: decodeTrailer(entry.content, `${path} trailer`), offset: size - span + i, length: s.length };
    } catch {
      // not it: keep looking
    }
  }
  return undefined;
}
