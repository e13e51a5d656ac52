import { parentPort, workerData } from 'node:worker_threads';
import { encodeTarHeader, tarPadding } from '../core/tar-header.js';
import { tarPieces, unframeBytes } from './tar-entry.js';
import { FrameCompressor, decompressFrame } from './zstd.js';
import { hashSegment, segmentHashReady, sumEntryAlgorithm, sumEntryName, sumLine } from './segment-hash.js';
import { writeSegmentParts } from './segment-parts.js';
import { fileLeaves } from './file-leaves.js';
import { leafHasher, type LeafHash } from '../core/volume-digest.js';
import { JshipError } from '../core/errors.js';
import type { FrameReply, FrameRequest, FrameWorkerData } from './frame-pool.js';

/**
 * A frame worker (started by FramePool): packs tar entries and compresses
 * them into one zstd frame, hashing a segment as it goes; or decompresses a
 * frame and finds its entries; or, for a restore, writes a stored segment's
 * parts into files (segment-parts.ts) or hashes a run of a file's chunks
 * (file-leaves.ts). Inputs come as transferred buffers and go back with the
 * reply, to be used again; outputs are transferred, never copied.
 */
if (!parentPort) throw new Error('frame.worker.js runs as a worker thread');
const port = parentPort;
const { level } = workerData as FrameWorkerData;
const compressor = new FrameCompressor(level);

/** A copy in an ArrayBuffer of its own, to be transferred. */
function own(view: Uint8Array): ArrayBuffer {
  const ab = new ArrayBuffer(view.length);
  new Uint8Array(ab).set(view);
  return ab;
}

/**
 * Packs the entry in place — its header before the content, padding, the
 * hash entry and the end-of-archive after it, all in the room the buffer
 * keeps for them (FrameContent) — and compresses the whole in one call.
 */
function frame(m: Extract<FrameRequest, { op: 'frame' }>): FrameReply {
  const all = new Uint8Array(m.buf);
  const mtime = Math.floor(m.mtime / 1000);
  let at = 0;
  const put = (bytes: Uint8Array): void => {
    all.set(bytes, at);
    at += bytes.length;
  };
  const zeros = (n: number): void => {
    all.fill(0, at, at + n);
    at += n;
  };
  put(encodeTarHeader({ name: m.name, size: m.length, mtime }));
  const content = all.subarray(at, at + m.length);
  at += m.length;
  zeros(tarPadding(m.length));
  // A segment is followed by its hash in xxhsum's format: `tar -x` then `xxhsum -c` checks it with no jship.
  const hash = m.hashed ? hashSegment('xxh128', content) : null;
  const hashEntry = hash === null ? [] : [{ name: sumEntryName(m.name, 'xxh128'), content: [sumLine(hash, m.name)] }];
  // The rest of the frame as tar-entry.ts lays any entries out (the hash entry, the end-of-archive).
  for (const piece of tarPieces(hashEntry, { mtime: new Date(m.mtime), eof: m.eof })) put(piece);
  const packed = all.subarray(0, at);
  // Compressed into the memory that came with the request (used before, handed back with the reply) when it is large enough.
  const n = m.out ? compressor.compressInto(new Uint8Array(m.out), packed) : null;
  if (n !== null && m.out) return { id: m.id, op: 'frame', buf: m.out, length: n, hash, spent: [m.buf] };
  const buf = own(compressor.compress(packed));
  return { id: m.id, op: 'frame', buf, length: buf.byteLength, hash, spent: m.out ? [m.buf, m.out] : [m.buf] };
}

function unframe(m: Extract<FrameRequest, { op: 'unframe' }>): FrameReply {
  const bytes = decompressFrame(new Uint8Array(m.buf, 0, m.length), m.out);
  const r = unframeBytes(bytes, 'the frame');
  return {
    id: m.id,
    op: 'unframe',
    bytes: bytes.buffer as ArrayBuffer,
    bytesOffset: bytes.byteOffset,
    // Segments are hashed here, off the reader's thread, by the algorithm their sum entry names (the reader checks it is the label's).
    entries: r.entries.map((e, i) => {
      const algorithm = m.hash && e.name.endsWith('.jrs') ? sumEntryAlgorithm(r.entries[i + 1]?.name ?? '', e.name) : undefined;
      return {
        name: e.name, offset: e.content.byteOffset - bytes.byteOffset, length: e.content.length,
        ...(algorithm ? { hash: hashSegment(algorithm, e.content) } : {}),
      };
    }),
    allZero: r.allZero,
    endsWithEof: r.endsWithEof,
    // An `out` it did not fit into goes back unused.
    spent: m.out && bytes.buffer !== m.out ? [m.buf, m.out] : [m.buf],
  };
}

/** A bare frame of part of the buffer (an encrypted segment's records, compressed before they are encrypted). */
function pack(m: Extract<FrameRequest, { op: 'pack' }>): FrameReply {
  return { id: m.id, op: 'pack', buf: own(compressor.compress(new Uint8Array(m.buf, m.offset, m.length))), spent: [m.buf] };
}

function onMessage(m: FrameRequest): void {
  try {
    const r: FrameReply = m.op === 'frame' ? frame(m) : m.op === 'pack' ? pack(m) : m.op === 'parts' ? { id: m.id, op: 'parts', written: writeSegmentParts(m), spent: [] }
      : m.op === 'leaves' ? { id: m.id, op: 'leaves', leaves: fileLeaves(m, leafHash).buffer as ArrayBuffer, spent: [] } : unframe(m);
    const out = r.op === 'frame' || r.op === 'pack' ? r.buf : r.op === 'unframe' ? r.bytes : r.op === 'leaves' ? r.leaves : undefined;
    // Shared memory (a frame's output) is not transferred: both threads see it.
    const spent: ReadonlyArray<ArrayBuffer | SharedArrayBuffer> = r.spent;
    const transfer = (out && !spent.includes(out) ? [...spent, out] : spent).filter((b): b is ArrayBuffer => !(b instanceof SharedArrayBuffer));
    port.postMessage(r, transfer);
  } catch (e) {
    const x = e as { code?: unknown; syscall?: unknown; targetFd?: unknown };
    port.postMessage({
      id: m.id, op: 'error', error: (e as Error).message ?? String(e), code: x.code, spent: [],
      ...(e instanceof JshipError ? { hint: e.hint ?? null } : {}),
      ...(typeof x.syscall === 'string' ? { syscall: x.syscall } : {}),
      ...(typeof x.targetFd === 'number' ? { targetFd: x.targetFd } : {}),
    } satisfies FrameReply);
  }
}

let leafHash: LeafHash;
// Requests wait in the port until the hashers are ready and the listener is on (a failure ends the worker with its error).
void Promise.all([segmentHashReady(), leafHasher()]).then(([, h]) => {
  leafHash = h;
  port.on('message', onMessage);
});
