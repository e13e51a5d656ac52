import { FLAG_BASE_ZERO, RecordType, type RecordHeader } from './record.js';

/**
 * Order of records when a base is merged with updates (DESIGN invariant 4):
 * by sequence number, a base record (whose "sequence" is its position) after
 * the journal record with that number and before the next.
 */
export function compareReplayOrder(a: RecordHeader, b: RecordHeader): number {
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  const ka = a.type === RecordType.Base ? 1 : 0;
  const kb = b.type === RecordType.Base ? 1 : 0;
  if (ka !== kb) return ka - kb;
  return a.offset - b.offset;
}

/**
 * Applies one record to in-memory volume images (the reference replay used
 * by the demo and the tests; restores stream to files the same way).
 */
export function applyToImages(images: Uint8Array[], h: RecordHeader, data: Uint8Array): void {
  const img = images[h.volume];
  switch (h.type) {
    case RecordType.Update:
      img?.set(data.subarray(0, h.length), h.offset);
      return;
    case RecordType.Zero:
    case RecordType.Trim:
      img?.fill(0, h.offset, h.offset + h.length);
      return;
    case RecordType.Base:
      if (h.flags & FLAG_BASE_ZERO) img?.fill(0, h.offset, h.offset + h.length);
      else img?.set(data.subarray(0, h.length), h.offset);
      return;
    default:
  }
}
