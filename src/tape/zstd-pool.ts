import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);

// The worker is plain CommonJS run with `eval`, so that it works from the
// compiled package and from the TypeScript sources under the test runner alike.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const zstd = require(workerData.zstdPath);
const c = new zstd.Compressor();
c.setParameters({ compressionLevel: workerData.level, checksumFlag: true, contentSizeFlag: true });
const d = new zstd.Decompressor();
parentPort.on('message', (m) => {
  try {
    const input = Buffer.from(m.buf, m.off, m.len);
    const out = m.op === 'compress' ? c.compress(input) : d.decompress(input);
    const ab = out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
    parentPort.postMessage({ id: m.id, buf: ab }, [ab]);
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e) });
  }
});
`;

interface Job {
  id: number;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

/**
 * zstd on worker threads: each tape segment is an independent frame, so
 * frames are compressed (or decompressed) on all cores while the main thread
 * reads the journal and writes the tape.
 */
export class ZstdPool {
  readonly #workers: Worker[] = [];
  readonly #busy = new Map<Worker, Job>();
  readonly #queue: Array<{ op: 'compress' | 'decompress'; buf: Buffer; job: Job }> = [];
  #next = 0;
  #closed = false;

  constructor(opts: { threads?: number; level?: number } = {}) {
    const n = opts.threads ?? Math.max(1, Math.min(4, availableParallelism()));
    const zstdPath = require.resolve('zstd-napi');
    for (let i = 0; i < n; i++) {
      const w = new Worker(WORKER, { eval: true, workerData: { zstdPath, level: opts.level ?? 1 } });
      w.unref();
      w.on('message', (m: { id: number; buf?: ArrayBuffer; error?: string }) => {
        const job = this.#busy.get(w);
        this.#busy.delete(w);
        if (job) {
          if (m.error !== undefined || !m.buf) job.reject(new Error(`zstd: ${m.error ?? 'no output'}`));
          else job.resolve(Buffer.from(m.buf));
        }
        this.#dispatch();
      });
      w.on('error', (e) => {
        const job = this.#busy.get(w);
        this.#busy.delete(w);
        job?.reject(e);
      });
      this.#workers.push(w);
    }
  }

  compress(buf: Buffer): Promise<Buffer> {
    return this.#submit('compress', buf);
  }

  decompress(buf: Buffer): Promise<Buffer> {
    return this.#submit('decompress', buf);
  }

  #submit(op: 'compress' | 'decompress', buf: Buffer): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new Error('zstd pool is closed'));
    return new Promise<Buffer>((resolve, reject) => {
      this.#queue.push({ op, buf, job: { id: this.#next++, resolve, reject } });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    for (const w of this.#workers) {
      if (this.#busy.has(w)) continue;
      const item = this.#queue.shift();
      if (!item) return;
      this.#busy.set(w, item.job);
      // Copy into a buffer of our own and hand it over without a second copy.
      const ab = new ArrayBuffer(item.buf.length);
      new Uint8Array(ab).set(item.buf);
      w.postMessage({ id: item.job.id, op: item.op, buf: ab, off: 0, len: ab.byteLength }, [ab]);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const item of this.#queue.splice(0)) item.job.reject(new Error('zstd pool closed'));
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
