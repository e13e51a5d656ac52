import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { TAR_BLOCK, TAR_EOF_BYTES } from '../core/tar-header.js';
import { compressBound } from '../core/zstd-frames.js';
import { startIdleWorker, stopWorker, workerUrl } from '../io/worker-url.js';
import type { TarEntry, Unframed } from './tar-entry.js';
import type { SegmentPartsRequest, TargetWriteFailure } from './segment-parts.js';
import type { FileLeavesRequest } from './file-leaves.js';
import { JshipError, type ErrorCode } from '../core/errors.js';

export type { Unframed } from './tar-entry.js';

/** What each frame worker is started with. */
export interface FrameWorkerData {
  level: number;
}

/** A message to a frame worker (frame.worker.ts). Buffers are transferred; `length` is what of each is used. */
export type FrameRequest =
  | { id: number; op: 'frame'; name: string; buf: ArrayBuffer; length: number; mtime: number; hashed: boolean; eof: boolean; out?: SharedArrayBuffer }
  | { id: number; op: 'unframe'; buf: ArrayBuffer; length: number; out?: ArrayBuffer; hash: boolean }
  | { id: number; op: 'pack'; buf: ArrayBuffer; offset: number; length: number }
  | ({ id: number; op: 'parts' } & SegmentPartsRequest)
  | ({ id: number; op: 'leaves' } & FileLeavesRequest);

/** A frame worker's answer; `spent` hands the request's buffers back, to be used again (shared ones are not transferred). */
export type FrameReply =
  | { id: number; op: 'frame'; buf: ArrayBuffer | SharedArrayBuffer; length: number; hash: string | null; spent: Array<ArrayBuffer | SharedArrayBuffer> }
  | { id: number; op: 'pack'; buf: ArrayBuffer; spent: ArrayBuffer[] }
  | {
    id: number; op: 'unframe'; bytes: ArrayBuffer; bytesOffset: number; allZero: boolean; endsWithEof: boolean; spent: ArrayBuffer[];
    entries: Array<{ name: string; offset: number; length: number; hash?: string }>;
  }
  | { id: number; op: 'parts'; written: number; spent: [] }
  | { id: number; op: 'leaves'; leaves: ArrayBuffer; spent: [] }
  /** A failure: `hint` when it was a JshipError (its code is `code`); `syscall` and `targetFd` from a system error (segment-parts.ts). */
  | { id: number; op: 'error'; error: string; code: unknown; spent: Array<ArrayBuffer | SharedArrayBuffer>; hint?: string | null; syscall?: string; targetFd?: number };

interface Result {
  buf: Buffer;
  /** The segment's hash (XXH3-128, hex), when asked for. */
  hash: string | null;
  /**
   * Hands `buf`'s memory back to the pool, to make a later frame in: called
   * once nothing reads `buf` any more (its write has ended), never before.
   * Not calling it only costs fresh memory.
   */
  release: () => void;
}

interface Job {
  msg: FrameRequest;
  transfer: ArrayBuffer[];
  /** The error a failure is given as (default: zstd's). */
  failure?: (m: Extract<FrameReply, { op: 'error' }>) => Error;
  resolve: (r: FrameReply) => void;
  reject: (e: Error) => void;
}

/** A worker's failure as it was thrown there: a JshipError, or a system error (with the descriptor of a target whose write failed). */
function asThrown(m: Extract<FrameReply, { op: 'error' }>): Error {
  if (m.hint !== undefined) return new JshipError(m.code as ErrorCode, m.error, m.hint === null ? {} : { hint: m.hint });
  return Object.assign(new Error(m.error), { code: m.code, ...(m.syscall ? { syscall: m.syscall } : {}), ...(m.targetFd !== undefined ? { targetFd: m.targetFd } satisfies TargetWriteFailure : {}) });
}

/**
 * Room a frame's buffer keeps after its content: padding to a block, the
 * hash entry (a header and one block: an xxhsum line for a name of up to
 * 100 bytes) and the end-of-archive.
 */
const FRAME_TAIL = TAR_BLOCK - 1 + 2 * TAR_BLOCK + TAR_EOF_BYTES;

/**
 * One frame's content, gathered in the memory a worker packs it in: the
 * content starts after room for its tar header and ends with room for what
 * follows it (FRAME_TAIL), so that the worker packs and compresses it in
 * place, with no copy. Taken from the pool (`content`), handed back by `frame`.
 */
export class FrameContent {
  readonly buf: ArrayBuffer;
  /** Content bytes written so far. */
  length = 0;

  constructor(buf: ArrayBuffer) {
    this.buf = buf;
  }

  /** The most content it holds. */
  get capacity(): number {
    return this.buf.byteLength - TAR_BLOCK - FRAME_TAIL;
  }

  /** The content area, from `start` (default 0) to `end` (default: the content's length). */
  view(start = 0, end = this.length): Buffer {
    return Buffer.from(this.buf, TAR_BLOCK + start, end - start);
  }

  /** Appends bytes (the caller asked for room enough: more is a bug, and throws). */
  append(bytes: Uint8Array): void {
    if (this.length + bytes.length > this.capacity) throw new Error(`frame content of ${this.capacity} bytes cannot take ${bytes.length} more after ${this.length}`);
    new Uint8Array(this.buf, TAR_BLOCK + this.length, bytes.length).set(bytes);
    this.length += bytes.length;
  }
}

/** Buffers of at least this size are kept for reuse once a worker hands them back (fresh memory costs page faults). */
const SPARE_MIN = 64 * 1024;
const SPARE_BYTES = 40 * 1024 * 1024;
/**
 * Jobs a worker is given at once: it starts the next as soon as it has
 * answered one, without waiting for the main thread to take the answer and
 * hand it another (on two shared cores that wait left the workers idle).
 */
export const WORKER_DEPTH = 2;

/** The frames' zstd level unless told: `zstd -1`, the peer every export figure is measured against. */
export const DEFAULT_ZSTD_LEVEL = 1;
/** The levels an export may ask for: zstd's --fast=7 to 19, as the zstd tool takes them. */
export const MIN_ZSTD_LEVEL = -7;
export const MAX_ZSTD_LEVEL = 19;

/**
 * Worker threads that make and unmake tape frames: each segment is an
 * independent zstd frame, so frames are packed, hashed and compressed (or
 * decompressed) on every core while the main thread reads the journal and
 * writes the tape in order. A restore also has them write its segments
 * into its targets and read the targets back for its proof, where the
 * bytes are (`writeParts`, `fileLeaves`).
 */
export class FramePool {
  readonly #workers: Worker[] = [];
  /** Each worker's jobs, in the order it answers them. */
  readonly #busy = new Map<Worker, Job[]>();
  readonly #queue: Job[] = [];
  /** Buffers handed back by the workers, smallest first; shared ones (frames made) apart. */
  readonly #spares: ArrayBuffer[] = [];
  readonly #sharedSpares: SharedArrayBuffer[] = [];
  #spareBytes = 0;
  #next = 0;
  #closed = false;
  /** What the last worker that failed failed with. */
  #failure: unknown;

  constructor(opts: { threads?: number; level?: number } = {}) {
    const n = opts.threads ?? Math.max(1, Math.min(4, availableParallelism()));
    const workerData: FrameWorkerData = { level: opts.level ?? DEFAULT_ZSTD_LEVEL };
    const url = workerUrl(import.meta.url, './frame.worker.js');
    for (let i = 0; i < n; i++) {
      const w: Worker = startIdleWorker<FrameReply>(url, { workerData }, {
        message: (m) => {
          const jobs = this.#busy.get(w);
          const job = jobs?.shift();
          // An idle worker does not keep the process alive (one with a job does: its caller waits for the answer;
          // one being stopped does too, until it has stopped).
          if (jobs?.length === 0 && !this.#closed) w.unref();
          for (const b of m.spent) this.#keep(b);
          if (job) {
            if (m.op === 'error') job.reject(job.failure ? job.failure(m) : new Error(`zstd: ${m.error}`));
            else job.resolve(m);
          }
          this.#dispatch();
        },
        // A worker that failed is dropped (its jobs fail): nothing more is given to it, and with none left every job fails.
        error: (e) => {
          const i = this.#workers.indexOf(w);
          if (i >= 0) this.#workers.splice(i, 1);
          const jobs = this.#busy.get(w) ?? [];
          this.#busy.delete(w);
          for (const job of jobs) job.reject(e);
          void w.terminate();
          this.#failure = e;
          if (this.#workers.length === 0) for (const job of this.#queue.splice(0)) job.reject(e);
          else this.#dispatch();
        },
      });
      this.#busy.set(w, []);
      this.#workers.push(w);
    }
  }

  /** Memory for a frame of up to `bytes` bytes of content (one handed back earlier when one is large enough). */
  content(bytes: number): FrameContent {
    return new FrameContent(this.#take(TAR_BLOCK + bytes + FRAME_TAIL));
  }

  /**
   * One compressed frame holding one tar entry, `name`, of `content`
   * (memory from `content()`, handed over: not to be used again; or pieces,
   * copied). With `hashed`, its XXH3-128 is computed and follows as a second
   * entry in xxhsum's format (a segment's .xxh128 beside its .jrs). With
   * `eof`, the tar end-of-archive follows.
   */
  async frame(name: string, content: FrameContent | readonly Uint8Array[], opts: { mtime: Date; hashed?: boolean; eof?: boolean }): Promise<Result> {
    let c: FrameContent;
    if (content instanceof FrameContent) {
      c = content;
    } else {
      c = this.content(content.reduce((n, p) => n + p.length, 0));
      for (const p of content) c.append(p);
    }
    // Memory for the compressed frame, used before (fresh memory costs page faults and zeroing), and shared:
    // the worker compresses into it where it is, nothing transferred either way.
    const out = this.#takeShared(compressBound(c.buf.byteLength));
    const r = await this.#submit({ id: 0, op: 'frame', name, buf: c.buf, length: c.length, mtime: opts.mtime.getTime(), hashed: opts.hashed ?? false, eof: opts.eof ?? false, out }, [c.buf]);
    if (r.op !== 'frame') throw new Error('frame worker answered out of turn');
    let released = false;
    return {
      buf: Buffer.from(r.buf, 0, r.length),
      hash: r.hash,
      release: () => {
        if (!released) this.#keep(r.buf);
        released = true;
      },
    };
  }

  /**
   * One bare zstd frame (content size declared, checksummed) of `content`
   * from `start` on, made by a worker: an encrypted segment's records are
   * compressed before they are encrypted. The content is handed over (not
   * to be used again).
   */
  async pack(content: FrameContent, start: number): Promise<Buffer> {
    const r = await this.#submit({ id: 0, op: 'pack', buf: content.buf, offset: TAR_BLOCK + start, length: content.length - start }, [content.buf]);
    if (r.op !== 'pack') throw new Error('frame worker answered out of turn');
    return Buffer.from(r.buf);
  }

  /**
   * Decompresses a frame and takes its tar entries apart, off the main
   * thread. With `recycle` (the frame's content size, from its header), it
   * is decompressed into memory used before, and `release` hands that memory
   * back once nothing refers to the entries any more (their contents are
   * views of it). Segments are hashed (by the algorithm their sum entry
   * names) unless `hash` is false: a reader that compares no hash (restore,
   * from tapes checked at import) does not pay for it. With `handOver`, the
   * frame is memory from `frameBuffer()`, handed over as it is (not copied;
   * not to be used again).
   */
  async unframe(frame: Buffer, opts: { recycle?: number; hash?: boolean; handOver?: boolean } = {}): Promise<Unframed & { release?: () => void }> {
    let buf: ArrayBuffer;
    if (opts.handOver) {
      if (frame.byteOffset !== 0 || !(frame.buffer instanceof ArrayBuffer)) throw new Error('a frame handed over is a whole buffer from frameBuffer()');
      buf = frame.buffer;
    } else {
      buf = this.#take(frame.length);
      new Uint8Array(buf).set(frame);
    }
    const out = opts.recycle !== undefined && opts.recycle >= SPARE_MIN ? this.#take(opts.recycle) : undefined;
    const r = await this.#submit({ id: 0, op: 'unframe', buf, length: frame.length, hash: opts.hash ?? true, ...(out ? { out } : {}) }, out ? [buf, out] : [buf]);
    if (r.op !== 'unframe') throw new Error('frame worker answered out of turn');
    const entries: TarEntry[] = r.entries.map((e) => ({ name: e.name, content: Buffer.from(r.bytes, r.bytesOffset + e.offset, e.length), ...(e.hash ? { hash: e.hash } : {}) }));
    return { entries, allZero: r.allZero, endsWithEof: r.endsWithEof, ...(out ? { release: () => this.#keep(r.bytes) } : {}) };
  }

  /**
   * Writes parts of a stored segment's records straight into files, on a
   * worker (segment-parts.ts): the bytes written. Fails with the worker's
   * TAPE_DAMAGED, or a system error (with `targetFd` when it came from a
   * target's write). The tape's and the targets' descriptors must stay open
   * until it settles.
   */
  async writeParts(req: SegmentPartsRequest): Promise<number> {
    const r = await this.#submit({ id: 0, op: 'parts', ...req }, [], asThrown);
    if (r.op !== 'parts') throw new Error('frame worker answered out of turn');
    return r.written;
  }

  /**
   * The point digest's leaves of a run of a file's chunks, read and hashed
   * on a worker (file-leaves.ts). Fails with the system's error of a read.
   * The file's descriptor must stay open until it settles.
   */
  async fileLeaves(req: FileLeavesRequest): Promise<BigUint64Array> {
    const r = await this.#submit({ id: 0, op: 'leaves', ...req }, [], asThrown);
    if (r.op !== 'leaves') throw new Error('frame worker answered out of turn');
    return new BigUint64Array(r.leaves);
  }

  /** Jobs the workers take at once (more wait in the pool's queue). */
  get capacity(): number {
    return Math.max(1, this.#workers.length) * WORKER_DEPTH;
  }

  /** Memory to read a frame of `bytes` bytes into, then hand to `unframe` ({ handOver: true }): reused, not fresh. */
  frameBuffer(bytes: number): Buffer {
    return Buffer.from(this.#take(bytes), 0, bytes);
  }

  /** A buffer of at least `bytes` bytes: one handed back earlier when one is large enough. */
  #take(bytes: number): ArrayBuffer {
    return this.#takeFrom(this.#spares, bytes) ?? new ArrayBuffer(bytes);
  }

  /** The same in shared memory. */
  #takeShared(bytes: number): SharedArrayBuffer {
    return this.#takeFrom(this.#sharedSpares, bytes) ?? new SharedArrayBuffer(bytes);
  }

  #takeFrom<B extends ArrayBufferLike>(spares: B[], bytes: number): B | undefined {
    const i = bytes >= SPARE_MIN ? spares.findIndex((b) => b.byteLength >= bytes) : -1;
    if (i < 0) return undefined;
    const buf = spares.splice(i, 1)[0] as B;
    this.#spareBytes -= buf.byteLength;
    return buf;
  }

  #keep(b: ArrayBuffer | SharedArrayBuffer): void {
    if (b.byteLength < SPARE_MIN || this.#closed) return;
    const spares: ArrayBufferLike[] = b instanceof SharedArrayBuffer ? this.#sharedSpares : this.#spares;
    spares.push(b);
    spares.sort((x, y) => x.byteLength - y.byteLength);
    this.#spareBytes += b.byteLength;
    // The largest go first: a bounded amount of memory waits for reuse.
    while (this.#spareBytes > SPARE_BYTES) {
      const [x, y] = [this.#spares.at(-1), this.#sharedSpares.at(-1)];
      const from: ArrayBufferLike[] = !y || (x && x.byteLength >= y.byteLength) ? this.#spares : this.#sharedSpares;
      this.#spareBytes -= (from.pop() as ArrayBufferLike).byteLength;
    }
  }

  #submit(msg: FrameRequest, transfer: ArrayBuffer[], failure?: Job['failure']): Promise<FrameReply> {
    if (this.#closed) return Promise.reject(new Error('frame pool is closed'));
    if (this.#workers.length === 0) return Promise.reject(this.#failure instanceof Error ? this.#failure : new Error('frame workers failed'));
    return new Promise<FrameReply>((resolve, reject) => {
      this.#queue.push({ msg, transfer, resolve, reject, ...(failure ? { failure } : {}) });
      this.#dispatch();
    });
  }

  /** Gives queued jobs to the least busy workers, up to WORKER_DEPTH each. */
  #dispatch(): void {
    for (;;) {
      if (this.#queue.length === 0) return;
      let w: Worker | undefined;
      let jobs: Job[] = [];
      for (const x of this.#workers) {
        const j = this.#busy.get(x) as Job[];
        if (!w || j.length < jobs.length) [w, jobs] = [x, j];
      }
      if (!w || jobs.length >= WORKER_DEPTH) return;
      const job = this.#queue.shift() as Job;
      jobs.push(job);
      w.ref();
      w.postMessage({ ...job.msg, id: this.#next++ }, job.transfer);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#spares.length = 0;
    this.#sharedSpares.length = 0;
    // What the workers still owe fails too (an answer on its way is not read): nothing waits on a stopped worker.
    for (const job of [...this.#queue.splice(0), ...[...this.#busy.values()].flatMap((jobs) => jobs.splice(0))]) job.reject(new Error('frame pool closed'));
    await Promise.all(this.#workers.map(stopWorker));
  }
}
