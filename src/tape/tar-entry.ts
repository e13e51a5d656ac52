import tar from 'tar-stream';
import { JshipError } from '../core/errors.js';

/** The end-of-archive marker: two zero blocks. */
export const TAR_EOF = Buffer.alloc(1024);

export interface TarEntry {
  name: string;
  content: Buffer;
}

/**
 * The tar bytes of some entries (ustar headers, contents, padding), made by
 * tar-stream's packer: each frame of a tape holds whole entries, so the
 * packer's end-of-archive blocks are cut off here.
 */
export async function encodeEntries(entries: Array<{ name: string; content: Buffer }>, mtime: Date): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) pack.entry({ name: e.name, size: e.content.length, mode: 0o644, mtime, uname: 'jship', gname: 'jship' }, e.content);
  pack.finalize();
  await ended;
  const all = Buffer.concat(chunks);
  return all.subarray(0, all.length - TAR_EOF.length);
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
