import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { TarEntry } from './tar-entry.js';

const require = createRequire(import.meta.url);

// The worker is plain CommonJS run with `eval`, so that it works from the
// compiled package and from the TypeScript sources under the test runner alike.
// It packs tar entries with tar-stream, hashes segments and compresses each
// frame with zstd; or decompresses a frame and takes its entries apart.
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
async function unframe(m) {
  const bytes = d.decompress(Buffer.from(m.buf));
  const entries = [];
  const x = tar.extract();
  const done = (async () => {
    for await (const e of x) {
      const parts = [];
      for await (const c of e) parts.push(c);
      const content = Buffer.concat(parts);
      // Segments are hashed here, off the reader's thread.
      entries.push({ name: e.header.name, content, sha256: e.header.name.endsWith('.jrs') ? createHash('sha256').update(content).digest('hex') : undefined });
    }
  })();
  x.end(Buffer.concat([bytes, Buffer.alloc(EOF)]));
  await done;
  const tail = bytes.subarray(Math.max(0, bytes.length - EOF));
  return {
    entries,
    allZero: entries.length === 0 && bytes.every((b) => b === 0),
    endsWithEof: bytes.length >= EOF && tail.every((b) => b === 0),
  };
}
function own(b) {
  // Small buffers come from Node's shared pool: copy them rather than hand over the pool.
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b.buffer : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}
// Frame buffers live outside the JS heap, where V8 collects late (after tens of MiB
// per thread): collect every few frames, so that memory stays bounded.
require('node:v8').setFlagsFromString('--expose-gc');
const collect = require('node:vm').runInNewContext('gc');
let jobs = 0;
parentPort.on('message', async (m) => {
  if (++jobs % 2 === 0) collect({ type: 'minor' });
  try {
    if (m.op === 'unframe') {
      const r = await unframe(m);
      const entries = r.entries.map((e) => ({ name: e.name, content: own(e.content), sha256: e.sha256 }));
      parentPort.postMessage({ id: m.id, entries, allZero: r.allZero, endsWithEof: r.endsWithEof }, entries.map((e) => e.content));
      return;
    }
    const r = await frame(m);
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

/** A frame taken apart: its tar entries, and whether it ended the archive (or was padding). */
export interface Unframed {
  entries: TarEntry[];
  allZero: boolean;
  endsWithEof: boolean;
}

interface Job {
  msg: Record<string, unknown>;
  transfer: ArrayBuffer[];
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
}

interface Reply {
  buf?: ArrayBuffer;
  sha256?: string | null;
  entries?: Array<{ name: string; content: ArrayBuffer; sha256?: string }>;
  allZero?: boolean;
  endsWithEof?: boolean;
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
      const w = new Worker(WORKER, { eval: true, workerData, execArgv: [] });
      w.unref();
      w.on('message', (m: Reply & { error?: string }) => {
        const job = this.#busy.get(w);
        this.#busy.delete(w);
        if (job) {
          if (m.error !== undefined || (!m.buf && !m.entries)) job.reject(new Error(`zstd: ${m.error ?? 'no output'}`));
          else job.resolve(m);
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
    const r = await this.#submit({ op: 'frame', entries: list, mtime: opts.mtime.getTime(), hashFirst: opts.hashFirst ?? false, eof: opts.eof ?? false }, list.map((e) => e.content));
    return { buf: Buffer.from(r.buf as ArrayBuffer), sha256: r.sha256 ?? null };
  }

  /** Decompresses a frame and takes its tar entries apart (tar-stream), off the main thread. */
  async unframe(frame: Buffer): Promise<Unframed> {
    const buf = owned([frame]);
    const r = await this.#submit({ op: 'unframe', buf }, [buf]);
    return {
      entries: (r.entries ?? []).map((e) => ({ name: e.name, content: Buffer.from(e.content), ...(e.sha256 ? { sha256: e.sha256 } : {}) })),
      allZero: r.allZero ?? false,
      endsWithEof: r.endsWithEof ?? false,
    };
  }

  #submit(msg: Record<string, unknown>, transfer: ArrayBuffer[]): Promise<Reply> {
    if (this.#closed) return Promise.reject(new Error('frame pool is closed'));
    return new Promise<Reply>((resolve, reject) => {
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
