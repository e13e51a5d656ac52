import tar from 'tar-stream';
import { decompress } from 'zstd-napi';
import { JshipError } from '../core/errors.js';

/** The end-of-archive marker: two zero blocks. */
export const TAR_EOF = Buffer.alloc(1024);

export interface TarEntry {
  name: string;
  content: Buffer;
  /** SHA-256 of a segment's content, when a worker computed it already. */
  sha256?: string;
}

/** Decodes the tar entries of one frame with tar-stream's extractor (zero blocks end them). */
export async function decodeEntries(bytes: Buffer, where: string): Promise<TarEntry[]> {
  const extract = tar.extract();
  const entries: TarEntry[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      entries.push({ name: entry.header.name, content: Buffer.concat(parts) });
    }
  })();
  extract.end(Buffer.concat([bytes, TAR_EOF]));
  try {
    await done;
  } catch (e) {
    throw new JshipError('TAPE_DAMAGED', `${where}: not tar entries (${(e as Error).message})`, { hint: 'the tape is damaged or not a jship tape', cause: e });
  }
  return entries;
}

/** Takes a decompressed frame apart on this thread (the pool does the same on a worker). */
export async function unframeBytes(bytes: Buffer, where: string): Promise<{ entries: TarEntry[]; allZero: boolean; endsWithEof: boolean }> {
  const entries = await decodeEntries(bytes, where);
  return {
    entries,
    allZero: entries.length === 0 && bytes.every((b) => b === 0),
    endsWithEof: bytes.length >= TAR_EOF.length && bytes.subarray(bytes.length - TAR_EOF.length).every((b) => b === 0),
  };
}

/**
 * A tape frame taken apart on this thread: zstd-decompressed, then its tar
 * entries. The one place jship decompresses outside the frame pool (whose
 * workers load the same zstd-napi by path); a frame that does not
 * decompress rejects.
 */
export async function unframe(frame: Uint8Array, where: string): Promise<{ entries: TarEntry[]; allZero: boolean; endsWithEof: boolean }> {
  return unframeBytes(decompress(frame), where);
}

/** The tar entries of one tape frame (see unframe). */
export async function frameEntries(frame: Uint8Array, where: string): Promise<TarEntry[]> {
  return decodeEntries(decompress(frame), where);
}
