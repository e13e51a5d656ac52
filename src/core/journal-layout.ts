import { JshipError } from './errors.js';
import { formatSize } from './sizes.js';
import { RECORD_SIZE } from './record.js';
import { SUPERBLOCK_SLOT } from './superblock.js';

/** Where the areas of a journal volume sit (§0060-0062: a metadata area and a data area). */
export interface JournalLayout {
  journalSize: number;
  metaOffset: number;
  metaSlots: number;
  dataOffset: number;
  dataSize: number;
}

export const MIN_JOURNAL_SIZE = 1024 * 1024;
/** One metadata slot per this many data bytes: sized for 2 KiB writes on average. */
export const DATA_BYTES_PER_SLOT = 2048;
const ALIGN = 4096;

/**
 * Splits a journal file of `size` bytes: two superblock copies, then the
 * metadata ring (64-byte slots), then the data ring, each 4 KiB aligned.
 */
export function planLayout(size: number): JournalLayout {
  if (!Number.isSafeInteger(size) || size < MIN_JOURNAL_SIZE) {
    throw new JshipError('JOURNAL_TOO_SMALL', `a journal of ${size} bytes (${formatSize(size)}) is smaller than the minimum of ${formatSize(MIN_JOURNAL_SIZE)}`, {
      hint: 'give --journal-size at least 1M; size it to hold the writes between two exports (e.g. 1G)',
    });
  }
  const metaOffset = 2 * SUPERBLOCK_SLOT;
  const usable = size - metaOffset;
  const metaBytes = Math.max(ALIGN, Math.floor(usable / (DATA_BYTES_PER_SLOT + RECORD_SIZE) * RECORD_SIZE / ALIGN) * ALIGN);
  const metaSlots = metaBytes / RECORD_SIZE;
  const dataOffset = metaOffset + metaBytes;
  const dataSize = Math.floor((size - dataOffset) / ALIGN) * ALIGN;
  return { journalSize: size, metaOffset, metaSlots, dataOffset, dataSize };
}

/**
 * The physical pieces of a logical range of a ring of `ringSize` bytes that
 * starts at file offset `base`: one piece, or two when the range wraps.
 */
export function ringPieces(base: number, ringSize: number, logical: bigint, length: number): Array<{ pos: number; len: number }> {
  const start = Number(logical % BigInt(ringSize));
  const first = Math.min(length, ringSize - start);
  const pieces = [{ pos: base + start, len: first }];
  if (first < length) pieces.push({ pos: base, len: length - first });
  return pieces;
}
