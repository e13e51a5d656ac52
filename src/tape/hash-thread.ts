import type { Worker } from 'node:worker_threads';
import { startIdleWorker, workerUrl } from '../io/worker-url.js';
import type { TapeHashAlgorithm } from './tape-hash.js';

/** A message to the hash thread (hash.worker.ts); `stream` names one hash among several, `algorithm` is its own. */
export type HashRequest =
  | { op: 'update'; stream: number; algorithm: TapeHashAlgorithm; buf: ArrayBufferLike; offset: number; length: number }
  | { op: 'digest'; stream: number; algorithm: TapeHashAlgorithm }
  | { op: 'drop'; stream: number };

/** Its answer to each 'update' and 'digest', in the order they were sent ('drop' has none). */
export type HashReply = { op: 'updated' } | { op: 'digest'; hex: string } | { op: 'error'; error: string };

/** One hash computed on the thread, over the bytes given to `update` in the order given. */
export interface StreamHash {
  /**
   * Hashes `bytes` after those given before; resolves once they are hashed
   * (until then they must stay as they are: memory shared with the thread
   * is read there, not copied). Fails if the thread fails.
   */
  update(bytes: Uint8Array): Promise<void>;
  /** The hex digest of every byte given (the stream ends). */
  digest(): Promise<string>;
  /** Ends the stream without a digest (a tape given up on). */
  drop(): void;
}

/**
 * A tape's hash (tape-hash.ts) off the caller's thread. It is sequential by
 * nature, and as SHA-256 it was half of an export's main thread for
 * incompressible data (0.87 of 1.75 CPU-s for 1 GiB): the main thread hands each frame over and goes on
 * with the next, and the frame's memory goes back to the pool once it is
 * both written and hashed. Frames in shared memory (SharedArrayBuffer, as
 * FramePool makes them) are read in place; other bytes are copied. One
 * thread, started on first use, serves every stream.
 */
export class HashThread {
  #worker: Worker | undefined;
  /** What each request sent waits for, in the order sent (the thread answers in order). */
  readonly #waiting: Array<{ resolve: (r: HashReply) => void; reject: (e: Error) => void }> = [];
  #next = 0;
  #failure: Error | undefined;
  #closed = false;

  /** A new hash with `algorithm`. */
  stream(algorithm: TapeHashAlgorithm): StreamHash {
    const stream = this.#next++;
    let ended = false;
    return {
      update: async (bytes) => {
        const shared = bytes.buffer instanceof SharedArrayBuffer;
        // A copy of its own (Buffer's slice() would be a view), handed over: the caller's memory stays its own.
        const buf = shared ? bytes.buffer : new Uint8Array(bytes).buffer;
        const r = await this.#send({ op: 'update', stream, algorithm, buf, offset: shared ? bytes.byteOffset : 0, length: bytes.length }, shared ? [] : [buf as ArrayBuffer]);
        if (r.op !== 'updated') throw new Error('the hash thread answered out of turn');
      },
      digest: async () => {
        ended = true;
        const r = await this.#send({ op: 'digest', stream, algorithm }, []);
        if (r.op !== 'digest') throw new Error('the hash thread answered out of turn');
        return r.hex;
      },
      drop: () => {
        if (ended || !this.#worker || this.#failure) return;
        ended = true;
        this.#worker.postMessage({ op: 'drop', stream } satisfies HashRequest);
      },
    };
  }

  #send(m: HashRequest, transfer: ArrayBuffer[]): Promise<HashReply> {
    if (this.#closed) return Promise.reject(new Error('the hash thread is closed'));
    if (this.#failure) return Promise.reject(this.#failure);
    const w = (this.#worker ??= this.#start());
    return new Promise<HashReply>((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      w.ref();
      w.postMessage(m, transfer);
    });
  }

  #start(): Worker {
    const fail = (e: Error): void => {
      this.#failure ??= e;
      for (const waiter of this.#waiting.splice(0)) waiter.reject(this.#failure);
    };
    const w: Worker = startIdleWorker<HashReply>(workerUrl(import.meta.url, './hash.worker.js'), {}, {
      message: (r) => {
        const waiter = this.#waiting.shift();
        // Idle, it does not keep the process alive; with a hash asked for, it does (its caller waits for it).
        if (this.#waiting.length === 0) w.unref();
        if (r.op === 'error') waiter?.reject(new Error(`tape hash: ${r.error}`));
        else waiter?.resolve(r);
      },
      error: fail,
      exit: (code) => {
        if (!this.#closed) fail(new Error(`the hash thread ended (exit code ${code})`));
      },
    });
    return w;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) waiter.reject(new Error('the hash thread is closed'));
    await this.#worker?.terminate();
  }
}
