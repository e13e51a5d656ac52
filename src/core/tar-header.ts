/**
 * The tar (ustar) framing of a tape's entries, with no I/O: a 512-byte
 * header per regular file, its content, zeros to the next 512-byte
 * boundary; two zero blocks end the archive. jship writes the same header
 * bytes tar-stream did (every tape written before this codec reads the
 * same), and reads back only what it writes: plain ustar regular files
 * with ASCII names of at most 100 bytes. See docs/FORMAT.md, "Tape".
 *
 * | off | size | field                                  |
 * |-----|------|----------------------------------------|
 * |   0 |  100 | name, NUL-padded                       |
 * | 100 |    8 | mode, octal "000644 \0"                |
 * | 108 |    8 | uid, octal "000000 \0"                 |
 * | 116 |    8 | gid, octal                             |
 * | 124 |   12 | size, octal (11 digits, space)         |
 * | 136 |   12 | mtime, seconds, octal                  |
 * | 148 |    8 | checksum: sum of the header's bytes with this field as spaces, octal |
 * | 156 |    1 | type '0' (regular file)                |
 * | 257 |    6 | magic "ustar\0"                        |
 * | 263 |    2 | version "00"                           |
 * | 265 |   32 | user name                              |
 * | 297 |   32 | group name                             |
 * | 329 |    8 | device major, octal                    |
 * | 337 |    8 | device minor, octal                    |
 */
export const TAR_BLOCK = 512;
/** The end-of-archive marker: two zero blocks. */
export const TAR_EOF_BYTES = 1024;
/** The largest size an 11-digit octal field holds (8 GiB - 1). */
const MAX_OCTAL_SIZE = 8 ** 11 - 1;
const USTAR = Buffer.from('ustar\x0000', 'latin1');

export interface TarHeader {
  name: string;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  mode?: number;
  uname?: string;
  gname?: string;
}

/** Zero bytes after content of `size` bytes, to the next block boundary. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The bytes one entry of `size` content bytes takes in the archive: header, content, padding. */
export function tarEntryBytes(size: number): number {
  return TAR_BLOCK + size + tarPadding(size);
}

function octal(value: number, digits: number): string {
  return `${value.toString(8).padStart(digits, '0')} `;
}

/** Encodes one regular file's header (jship's entries: ASCII names up to 100 bytes, sizes under 8 GiB). */
export function encodeTarHeader(h: TarHeader): Buffer {
  if (!/^[\x20-\x7e]{1,100}$/.test(h.name)) throw new RangeError(`tar entry name ${JSON.stringify(h.name)}: 1 to 100 printable ASCII characters`);
  if (!Number.isSafeInteger(h.size) || h.size < 0 || h.size > MAX_OCTAL_SIZE) throw new RangeError(`tar entry size ${h.size}: 0 to ${MAX_OCTAL_SIZE}`);
  const b = Buffer.alloc(TAR_BLOCK);
  b.write(h.name, 0, 'latin1');
  b.write(octal((h.mode ?? 0o644) & 0o7777, 6), 100, 'latin1');
  b.write(octal(0, 6), 108, 'latin1');
  b.write(octal(0, 6), 116, 'latin1');
  b.write(octal(h.size, 11), 124, 'latin1');
  b.write(octal(Math.max(0, Math.floor(h.mtime)), 11), 136, 'latin1');
  b[156] = 0x30;
  USTAR.copy(b, 257);
  b.write((h.uname ?? 'jship').slice(0, 31), 265, 'latin1');
  b.write((h.gname ?? 'jship').slice(0, 31), 297, 'latin1');
  b.write(octal(0, 6), 329, 'latin1');
  b.write(octal(0, 6), 337, 'latin1');
  b.write(octal(checksum(b), 6), 148, 'latin1');
  return b;
}

function checksum(b: Uint8Array): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += b[i] as number;
  for (let i = 156; i < TAR_BLOCK; i++) sum += b[i] as number;
  return sum;
}

function readOctal(b: Uint8Array, off: number, len: number): number | null {
  let v = 0;
  let i = off;
  const end = off + len;
  while (i < end && b[i] === 0x20) i++;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i] as number;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return null;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  return digits > 0 && Number.isSafeInteger(v) ? v : null;
}

function readString(b: Uint8Array, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return Buffer.from(b.buffer, b.byteOffset + off, end - off).toString('latin1');
}

/** Whether a 512-byte block is all zeros (the end-of-archive, or padding). */
function isZeroBlock(b: Uint8Array, off = 0): boolean {
  for (let i = off; i < off + TAR_BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Decodes the header at `off`: a regular file's name, size and mtime, or
 * an Error-message string saying what is wrong with it.
 */
export function decodeTarHeader(b: Uint8Array, off = 0): TarHeader | string {
  if (b.length - off < TAR_BLOCK) return `a header needs ${TAR_BLOCK} bytes, ${b.length - off} remain`;
  const block = b.subarray(off, off + TAR_BLOCK);
  const stored = readOctal(block, 148, 8);
  if (stored === null || stored !== checksum(block)) return 'header checksum does not match';
  if (Buffer.compare(block.subarray(257, 263), USTAR.subarray(0, 6)) !== 0) return 'not a ustar header';
  const type = block[156];
  if (type !== 0x30 && type !== 0) return `entry type ${JSON.stringify(String.fromCharCode(type as number))} (jship writes regular files only)`;
  const size = readOctal(block, 124, 12);
  if (size === null) return 'size field is not octal';
  const mtime = readOctal(block, 136, 12) ?? 0;
  const prefix = readString(block, 345, 155);
  const name = readString(block, 0, 100);
  return { name: prefix ? `${prefix}/${name}` : name, size, mtime, mode: readOctal(block, 100, 8) ?? 0, uname: readString(block, 265, 32), gname: readString(block, 297, 32) };
}

/** One entry of an archive: its name and its content (a view of the archive's bytes, not a copy). */
export interface TarContent {
  name: string;
  content: Buffer;
}

/**
 * Takes the entries of archive bytes apart without copying. Zero blocks are
 * skipped (between frames, and the end-of-archive); a damaged header or an
 * entry cut short is an error naming its offset.
 */
export function splitTar(bytes: Buffer): TarContent[] | { error: string } {
  const out: TarContent[] = [];
  let off = 0;
  while (off + TAR_BLOCK <= bytes.length) {
    if (isZeroBlock(bytes, off)) {
      off += TAR_BLOCK;
      continue;
    }
    const h = decodeTarHeader(bytes, off);
    if (typeof h === 'string') return { error: `at byte ${off}: ${h}` };
    const start = off + TAR_BLOCK;
    if (start + h.size > bytes.length) return { error: `entry ${h.name} at byte ${off} declares ${h.size} bytes, ${bytes.length - start} follow` };
    out.push({ name: h.name, content: bytes.subarray(start, start + h.size) });
    off = start + h.size + tarPadding(h.size);
  }
  if (off < bytes.length && !bytes.subarray(off).every((x) => x === 0)) return { error: `${bytes.length - off} bytes after the last block` };
  return out;
}
