import type { Worker } from 'node:worker_threads';
import { JshipError } from '../core/errors.js';
import { deferred } from '../core/deferred.js';
import { startIdleWorker, stopWorker, workerUrl } from '../io/worker-url.js';
import { writeFullySync } from '../io/files.js';

/** A batch for the PVOL writer's thread (pvol.worker.ts): ops are [fd, position, offset in buf, length] fours. */
export interface PvolBatch {
  id: number;
  ops: number[];
  buf: ArrayBuffer;
}

export interface PvolReply {
  id: number;
  error?: string;
  code?: string | undefined;
}

/** Writes at most this large go through the batch writer; larger ones are cheaper as one pwrite of their own. */
export const SMALL_WRITE = 64 * 1024;
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_OPS = 512;

interface Batch {
  id: number;
  ops: number[];
  pieces: Array<{ data: Uint8Array; off: number }>;
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * Small PVOL writes, batched onto one worker thread. Each write through the
 * thread pool costs the main thread a dispatch and the pool a wake-up; a
 * batch costs one message. Writes queued in the same turn of the event loop
 * leave together; a turn's first write that finds nothing queued and
 * nothing on the thread is written at once instead. The caller keeps
 * overlapping writes apart (range order).
 */
export class PvolWriter {
  #worker: Worker | undefined;
  #pending: Batch | undefined;
  readonly #inFlight = new Map<number, Batch>();
  #next = 1;
  #closed = false;
  #wroteThisTurn = false;

  /**
   * Writes `data` at `pos` of `fd`; resolves once it is in the file (page
   * cache). The first write of a turn of the event loop that finds the
   * writer idle (nothing queued, nothing on the thread) is written at once
   * from this thread: a lone small write is cheaper as one pwrite than as a
   * message to the thread and its answer. The writes after it in the same
   * turn are batched for the thread.
   */
  write(fd: number, pos: number, data: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new JshipError('GROUP_CLOSED', 'the PVOL writer is closed', { hint: 'open the group again' }));
    if (!this.#wroteThisTurn && !this.#pending && this.#inFlight.size === 0) {
      this.#wroteThisTurn = true;
      setImmediate(() => { this.#wroteThisTurn = false; });
      try {
        writeFullySync(fd, data, pos);
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(pvolError((e as Error).message, (e as NodeJS.ErrnoException).code));
      }
    }
    let b = this.#pending;
    if (!b) {
      b = this.#newBatch();
      this.#pending = b;
      setImmediate(() => this.#send(b as Batch));
    }
    b.ops.push(fd, pos, b.bytes, data.length);
    b.pieces.push({ data, off: b.bytes });
    b.bytes += data.length;
    const done = b.done;
    if (b.bytes >= BATCH_BYTES || b.ops.length >= BATCH_OPS * 4) this.#send(b);
    return done;
  }

  async close(): Promise<void> {
    if (this.#pending) this.#send(this.#pending);
    await Promise.allSettled([...this.#inFlight.values()].map((b) => b.done));
    this.#closed = true;
    if (this.#worker) await stopWorker(this.#worker);
    this.#worker = undefined;
  }

  #newBatch(): Batch {
    const d = deferred();
    return { id: this.#next++, ops: [], pieces: [], bytes: 0, done: d.promise, resolve: d.resolve, reject: d.reject };
  }

  #send(b: Batch): void {
    if (this.#pending !== b) return;
    this.#pending = undefined;
    const buf = new ArrayBuffer(b.bytes);
    const view = new Uint8Array(buf);
    for (const p of b.pieces) view.set(p.data, p.off);
    b.pieces = [];
    const w = this.#ensureWorker();
    this.#inFlight.set(b.id, b);
    w.ref();
    w.postMessage({ id: b.id, ops: b.ops, buf } satisfies PvolBatch, [buf]);
  }

  #ensureWorker(): Worker {
    if (this.#worker) return this.#worker;
    const w: Worker = startIdleWorker<PvolReply>(workerUrl(import.meta.url, './pvol.worker.js'), {}, {
      message: (m) => {
        const b = this.#inFlight.get(m.id);
        this.#inFlight.delete(m.id);
        if (this.#inFlight.size === 0 && !this.#closed) w.unref();
        if (!b) return;
        if (m.error !== undefined) b.reject(pvolError(m.error, m.code));
        else b.resolve();
      },
      error: (e) => {
        for (const b of this.#inFlight.values()) b.reject(e);
        this.#inFlight.clear();
        this.#worker = undefined;
      },
    });
    this.#worker = w;
    return w;
  }
}

/** A failed PVOL write, the same whichever thread wrote it. */
function pvolError(message: string, code: string | undefined): Error {
  return Object.assign(new Error(`PVOL write: ${message}`), { code });
}
