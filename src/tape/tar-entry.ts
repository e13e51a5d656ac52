import { JshipError } from '../core/errors.js';
import { TAR_EOF_BYTES, encodeTarHeader, splitTar, tarPadding } from '../core/tar-header.js';
import { decompressFrame } from './zstd.js';

/** The end-of-archive marker: two zero blocks. */
const TAR_EOF = Buffer.alloc(TAR_EOF_BYTES);
const ZEROS = Buffer.alloc(512);

export interface TarEntry {
  name: string;
  content: Buffer;
  /** A segment's hash (by the algorithm of the sum entry after it), when a worker computed it already. */
  hash?: string;
}

/** An entry to pack: its content may come in pieces (written in order, never joined). */
export interface TarPackEntry {
  name: string;
  content: readonly Uint8Array[];
}

/**
 * The pieces of a tar archive holding `entries` (headers, the content
 * pieces as given, padding): handed to a compressor one by one, so that no
 * entry is copied to be packed. jship's entries are regular files, mode
 * 0644, owned by jship:jship, all with the same mtime.
 */
export function tarPieces(entries: readonly TarPackEntry[], o: { mtime: Date; eof: boolean }): Uint8Array[] {
  const out: Uint8Array[] = [];
  const mtime = Math.floor(o.mtime.getTime() / 1000);
  for (const e of entries) {
    const size = e.content.reduce((n, p) => n + p.length, 0);
    out.push(encodeTarHeader({ name: e.name, size, mtime }), ...e.content);
    const pad = tarPadding(size);
    if (pad > 0) out.push(ZEROS.subarray(0, pad));
  }
  if (o.eof) out.push(TAR_EOF);
  return out;
}

/** Decodes the tar entries of one frame's bytes (zero blocks are skipped); contents are views of `bytes`. */
export function decodeEntries(bytes: Buffer, where: string): TarEntry[] {
  const r = splitTar(bytes);
  if (!Array.isArray(r)) throw new JshipError('TAPE_DAMAGED', `${where}: not tar entries (${r.error})`, { hint: 'the tape is damaged or not a jship tape' });
  return r;
}

/** What a frame holds once taken apart. */
export interface Unframed {
  entries: TarEntry[];
  /** No entries, only zeros (padding after the end-of-archive). */
  allZero: boolean;
  /** The tar end-of-archive ends it. */
  endsWithEof: boolean;
}

/** Takes a decompressed frame apart on this thread (the pool does the same on a worker). */
export function unframeBytes(bytes: Buffer, where: string): Unframed {
  const entries = decodeEntries(bytes, where);
  return {
    entries,
    allZero: entries.length === 0 && bytes.every((b) => b === 0),
    endsWithEof: bytes.length >= TAR_EOF_BYTES && bytes.subarray(bytes.length - TAR_EOF_BYTES).every((b) => b === 0),
  };
}

/**
 * A tape frame taken apart on this thread: zstd-decompressed, then its tar
 * entries. A frame that does not decompress throws a plain Error (the
 * caller says where and what it means); one that is not tar entries is
 * TAPE_DAMAGED.
 */
export function unframe(frame: Uint8Array, where: string): Unframed {
  return unframeBytes(decompressFrame(frame), where);
}

/** The tar entries of one tape frame (see unframe). */
export function frameEntries(frame: Uint8Array, where: string): TarEntry[] {
  return decodeEntries(decompressFrame(frame), where);
}
