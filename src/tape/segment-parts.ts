import { JshipError } from '../core/errors.js';
import { readFullySync, writeFullySync } from '../io/files.js';
import { cataloguedFrame } from '../core/zstd-frames.js';
import { SEGMENT_HEADER_SIZE, STORED_TAPE_CHANGED, expectSegment, recordBytes, type ExpectedSegment } from './segment.js';
import { decodeEntries } from './tar-entry.js';
import { decompressFrame } from './zstd.js';

/**
 * Parts of one stored segment's records written straight into files, all
 * on the calling thread (a frame worker's): the frame read from the tape,
 * decompressed, the segment checked to be the one catalogued there, and
 * each part `pwrite`n. A coalesced restore hands its segments here, so that
 * no byte crosses between threads and the main thread only plans.
 */
export interface SegmentPartsRequest {
  /** The stored tape's descriptor (held open by the caller until the answer), and where the segment's frame is on it. */
  fd: number;
  offset: number;
  length: number;
  /** The segment as errors name it (its tape's path and number). */
  where: string;
  /** What the segment must be (its tape is catalogued as plaintext: the caller opens encrypted ones itself). */
  expect: Omit<ExpectedSegment, 'plaintext'>;
  /** Flattened fours: a target's descriptor, a position in it, an offset into the records payload, a length. */
  parts: Float64Array;
}

/** A part's write failed: the system's error, with the descriptor of the target it was writing (the caller names its path). */
export interface TargetWriteFailure {
  targetFd: number;
}

/** Buffers up to this size are kept from one segment to the next (a segment of the default size is about 1 MiB). */
const KEEP = 8 * 1024 * 1024;
let frameBuf = Buffer.alloc(0);
let contentBuf: ArrayBuffer | undefined;

/** Writes the parts: the bytes written. Throws TAPE_DAMAGED for a segment not as catalogued, and a system error (with `targetFd` when writing) otherwise. */
export function writeSegmentParts(m: SegmentPartsRequest): number {
  const frame = frameBuf.length >= m.length ? frameBuf.subarray(0, m.length) : Buffer.allocUnsafeSlow(m.length);
  if (frame.length <= KEEP && frame.buffer !== frameBuf.buffer) frameBuf = frame;
  const got = readFullySync(m.fd, frame, m.offset);
  if (got !== m.length) throw new JshipError('TAPE_DAMAGED', `${m.where} is cut short (${got} of ${m.length} bytes)`, { hint: STORED_TAPE_CHANGED });
  let content: Buffer;
  try {
    cataloguedFrame(frame);
    const bytes = decompressFrame(frame, contentBuf);
    if (bytes.buffer.byteLength <= KEEP && bytes.buffer !== contentBuf) contentBuf = bytes.buffer as ArrayBuffer;
    content = decodeEntries(bytes, m.where)[0]?.content ?? Buffer.alloc(0);
  } catch (e) {
    throw new JshipError('TAPE_DAMAGED', `${m.where} cannot be read: ${(e as Error).message}`, { hint: STORED_TAPE_CHANGED, cause: e });
  }
  // The caller sends only segments of tapes catalogued as plaintext (an encrypted one is opened where its key is).
  expectSegment(content, { ...m.expect, plaintext: true }, m.where);
  const payload = content.subarray(SEGMENT_HEADER_SIZE);
  let written = 0;
  for (let i = 0; i + 3 < m.parts.length; i += 4) {
    const fd = m.parts[i] as number;
    const length = m.parts[i + 3] as number;
    const bytes = recordBytes(payload, m.parts[i + 2] as number, length, m.where);
    try {
      writeFullySync(fd, bytes, m.parts[i + 1] as number);
    } catch (e) {
      throw Object.assign(e as Error, { targetFd: fd } satisfies TargetWriteFailure);
    }
    written += length;
  }
  return written;
}
