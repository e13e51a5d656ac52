import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);

// The worker is plain CommonJS run with `eval`, so that it works from the
// compiled package and from the TypeScript sources under the test runner alike.
// It packs tar entries with tar-stream, hashes segments and compresses each
// frame with zstd; or decompresses a frame.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const zstd = require(workerData.zstdPath);
const tar = require(workerData.tarPath);
const c = new zstd.Compressor();
c.setParameters({ compressionLevel: workerData.level, checksumFlag: true, contentSizeFlag: true });
const d = new zstd.Decompressor();
const EOF = 1024;
function pack(entries, mtime) {
  return new Promise((resolve, reject) => {
    const p = tar.pack();
    const chunks = [];
    p.on('data', (x) => chunks.push(x));
    p.on('end', () => resolve(Buffer.concat(chunks)));
    p.on('error', reject);
    for (const e of entries) p.entry({ name: e.name, size: e.content.length, mode: 0o644, mtime, uname: 'jship', gname: 'jship' }, e.content);
    p.finalize();
  });
}
async function frame(m) {
  const entries = m.entries.map((e) => ({ name: e.name, content: Buffer.from(e.content) }));
  let sha256 = null;
  if (m.hashFirst) {
    const first = entries[0];
    sha256 = createHash('sha256').update(first.content).digest('hex');
    entries.push({ name: first.name.replace(/\\.jrs$/, '.sha256'), content: Buffer.from(sha256 + '  ' + first.name + '\\n') });
  }
  const all = await pack(entries, new Date(m.mtime));
  return { out: c.compress(m.eof ? all : all.subarray(0, all.length - EOF)), sha256 };
}
// Frame buffers live outside the JS heap, where V8 collects late (after tens of MiB
// per thread): collect every few frames, so that memory stays bounded.
require('node:v8').setFlagsFromString('--expose-gc');
const collect = require('node:vm').runInNewContext('gc');
let jobs = 0;
parentPort.on('message', async (m) => {
  if (++jobs % 4 === 0) collect();
  try {
    const r = m.op === 'frame' ? await frame(m) : { out: d.decompress(Buffer.from(m.buf)), sha256: null };
    // Hand the output over without a copy when it owns its memory.
    const whole = r.out.byteOffset === 0 && r.out.byteLength === r.out.buffer.byteLength;
    const ab = whole ? r.out.buffer : r.out.buffer.slice(r.out.byteOffset, r.out.byteOffset + r.out.byteLength);
    parentPort.postMessage({ id: m.id, buf: ab, sha256: r.sha256 }, [ab]);
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

interface Result {
  buf: Buffer;
  sha256: string | null;
}

interface Job {
  msg: Record<string, unknown>;
  transfer: ArrayBuffer[];
  resolve: (r: Result) => void;
  reject: (e: Error) => void;
}

/** Copies into an ArrayBuffer of its own, to be handed to a worker without another copy. */
function owned(parts: Uint8Array[]): ArrayBuffer {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const ab = new ArrayBuffer(len);
  const view = new Uint8Array(ab);
  let off = 0;
  for (const p of parts) {
    view.set(p, off);
    off += p.length;
  }
  return ab;
}

/**
 * Worker threads that make and unmake tape frames: each segment is an
 * independent zstd frame, so frames are packed, hashed and compressed (or
 * decompressed) on every core while the main thread reads the journal and
 * writes the tape in order.
 */
export class FramePool {
  readonly #workers: Worker[] = [];
  readonly #busy = new Map<Worker, Job>();
  readonly #queue: Job[] = [];
  #next = 0;
  #closed = false;

  constructor(opts: { threads?: number; level?: number } = {}) {
    const n = opts.threads ?? Math.max(1, Math.min(4, availableParallelism()));
    const workerData = { zstdPath: require.resolve('zstd-napi'), tarPath: require.resolve('tar-stream'), level: opts.level ?? 1 };
    for (let i = 0; i < n; i++) {
      const w = new Worker(WORKER, { eval: true, workerData });
      w.unref();
      w.on('message', (m: { buf?: ArrayBuffer; sha256?: string | null; error?: string }) => {
        const job = this.#busy.get(w);
        this.#busy.delete(w);
        if (job) {
          if (m.error !== undefined || !m.buf) job.reject(new Error(`zstd: ${m.error ?? 'no output'}`));
          else job.resolve({ buf: Buffer.from(m.buf), sha256: m.sha256 ?? null });
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

  /**
   * One compressed frame holding tar entries (made by tar-stream). With
   * `hashFirst`, the first entry's SHA-256 is computed and added as a second
   * entry in sha256sum's format. With `eof`, the tar end-of-archive follows.
   */
  async frame(entries: Array<{ name: string; content: Uint8Array[] }>, opts: { mtime: Date; hashFirst?: boolean; eof?: boolean }): Promise<Result> {
    const list = entries.map((e) => ({ name: e.name, content: owned(e.content) }));
    return this.#submit({ op: 'frame', entries: list, mtime: opts.mtime.getTime(), hashFirst: opts.hashFirst ?? false, eof: opts.eof ?? false }, list.map((e) => e.content));
  }

  async decompress(frame: Buffer): Promise<Buffer> {
    const buf = owned([frame]);
    return (await this.#submit({ op: 'decompress', buf }, [buf])).buf;
  }

  #submit(msg: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<Result> {
    if (this.#closed) return Promise.reject(new Error('frame pool is closed'));
    return new Promise<Result>((resolve, reject) => {
      this.#queue.push({ msg, transfer, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    for (const w of this.#workers) {
      if (this.#busy.has(w)) continue;
      const job = this.#queue.shift();
      if (!job) return;
      this.#busy.set(w, job);
      w.postMessage({ ...job.msg, id: this.#next++ }, job.transfer);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.reject(new Error('frame pool closed'));
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
