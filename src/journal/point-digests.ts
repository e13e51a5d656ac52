import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ChunkTable, DIGEST_ALGORITHM, checkPointDigest, groupRoot, leafHasher, type LeafHash, type PointDigest } from '../core/volume-digest.js';
import { writeFileAtomic } from '../io/files.js';
import type { Volume } from '../volume/volume.js';
import type { RangeOrder } from './range-order.js';

/** Where a group keeps its point digests (one JSON line each) and, between a clean close and the next open, its chunk table. */
export const digestPaths = (dir: string): { log: string; table: string } => ({ log: join(dir, 'digests.jsonl'), table: join(dir, 'digest-table.bin') });

/** What identifies the volume files the saved table was taken of (an out-of-band change makes it worthless). */
async function fileStamps(volumes: readonly Volume[]): Promise<string[]> {
  return Promise.all(volumes.flatMap((v) => v.extents.map(async (e) => {
    const st = await fsp.stat(e.path);
    return `${e.path}:${st.size}:${st.mtimeMs}`;
  })));
}

/**
 * The primary's point digests (core/volume-digest.ts): a chunk table per
 * volume whose leaves are brought up to date at each restore point and base
 * completion — only the chunks written since the last one are read, in the
 * journal's order (right after the marker's sequence number is given out,
 * their reads are ordered after every earlier write and before every later
 * one), so each digest is the volumes exactly at its marker. Digests are
 * kept in digests.jsonl and travel in the trailers of the tapes holding
 * their markers. The table is saved at a clean close; after a crash (or an
 * out-of-band change to a volume file) every chunk is read at the next point.
 */
export class PointDigests {
  readonly #dir: string;
  readonly #tables: ChunkTable[];
  readonly #hash: LeafHash;
  readonly #known = new Map<string, PointDigest>();
  readonly #pending = new Map<string, Promise<PointDigest>>();
  /** Volume reads of one digest at a time: digests are computed in marker order. */
  #last: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, tables: ChunkTable[], hash: LeafHash) {
    this.#dir = dir;
    this.#tables = tables;
    this.#hash = hash;
  }

  static async open(dir: string, volumes: readonly Volume[], chunkSize: number, lastSeq: bigint): Promise<PointDigests> {
    const paths = digestPaths(dir);
    const tables = await loadTable(paths.table, volumes, chunkSize, lastSeq).catch(() => undefined);
    // Used once: a crash after this open must not find a table that no longer matches the volumes.
    await fsp.rm(paths.table, { force: true });
    const d = new PointDigests(dir, tables ?? volumes.map((v) => new ChunkTable(v.size, chunkSize)), await leafHasher());
    const text = await fsp.readFile(paths.log, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const p = checkPointDigest(JSON.parse(line), paths.log);
        d.#known.set(p.seq, p);
      } catch {
        // A half-written last line (a crash while appending): that point has no digest.
      }
    }
    return d;
  }

  markDirty(volume: number, offset: number, length: number): void {
    this.#tables[volume]?.markDirty(offset, length);
  }

  /**
   * Starts the digest of the point at `seq`. Must be called in the same
   * tick as `seq` was given out: the dirty chunks are taken and their reads
   * ordered now. Resolves once the digest is computed and logged.
   */
  begin(seq: bigint, kind: PointDigest['kind'], name: string | undefined, order: RangeOrder, volumes: readonly Volume[]): Promise<PointDigest> {
    const reads = this.#tables.map((t, v) => t.takeDirty().map(([first, count]) => {
      const [start] = t.range(first);
      const end = Math.min(t.size, (first + count) * t.chunkSize);
      return { first, count, op: order.register(v, start, end - start) };
    }));
    const run = this.#last.then(async () => {
      for (const [v, runs] of reads.entries()) {
        const t = this.#tables[v] as ChunkTable;
        const vol = volumes[v] as Volume;
        for (const r of runs) {
          try {
            await r.op.ready;
            for (let c = r.first; c < r.first + r.count; c++) {
              const [off, len] = t.range(c);
              t.leaves[c] = this.#hash(await vol.read(off, len));
            }
          } catch (e) {
            // Read again at the next point.
            t.markDirty(r.first * t.chunkSize, r.count * t.chunkSize);
            throw e;
          } finally {
            r.op.finish();
          }
        }
      }
      const vols = this.#tables.map((t, v) => ({ name: (volumes[v] as Volume).name, size: t.size, root: t.root() }));
      const digest: PointDigest = {
        algorithm: DIGEST_ALGORITHM, seq: seq.toString(), kind, ...(name !== undefined ? { name } : {}), chunkSize: (this.#tables[0] as ChunkTable).chunkSize, volumes: vols, root: groupRoot(vols),
      };
      const h = await fsp.open(digestPaths(this.#dir).log, 'a');
      try {
        await h.appendFile(`${JSON.stringify(digest)}\n`);
        await h.datasync();
      } finally {
        await h.close();
      }
      this.#known.set(digest.seq, digest);
      return digest;
    });
    // Reads for the next point wait for these (their chunk leaves are shared).
    this.#last = run.catch(() => undefined);
    const key = seq.toString();
    this.#pending.set(key, run);
    void run.finally(() => this.#pending.delete(key)).catch(() => undefined);
    return run;
  }

  /** The digests of the points in [first, last], waiting for those still being computed. */
  async between(first: bigint, last: bigint): Promise<PointDigest[]> {
    const inRange = (s: string): boolean => BigInt(s) >= first && BigInt(s) <= last;
    await Promise.allSettled([...this.#pending].filter(([s]) => inRange(s)).map(([, p]) => p));
    return [...this.#known.values()].filter((d) => inRange(d.seq)).sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
  }

  get(seq: bigint): PointDigest | undefined {
    return this.#known.get(seq.toString());
  }

  /** Keeps the table for the next open (a clean close, after the last record `lastSeq`). */
  async save(volumes: readonly Volume[], lastSeq: bigint): Promise<void> {
    await Promise.allSettled([...this.#pending.values()]);
    const header = Buffer.from(`${JSON.stringify({ seq: lastSeq.toString(), chunkSize: this.#tables[0]?.chunkSize, files: await fileStamps(volumes), sizes: this.#tables.map((t) => t.size) })}\n`);
    const parts: Buffer[] = [header];
    for (const t of this.#tables) {
      const leaves = Buffer.alloc(t.chunks * 8);
      t.leaves.forEach((l, i) => leaves.writeBigUInt64LE(l, i * 8));
      parts.push(leaves, Buffer.from(t.dirty));
    }
    await writeFileAtomic(digestPaths(this.#dir).table, Buffer.concat(parts));
  }
}

async function loadTable(path: string, volumes: readonly Volume[], chunkSize: number, lastSeq: bigint): Promise<ChunkTable[] | undefined> {
  const buf = await fsp.readFile(path);
  const nl = buf.indexOf(10);
  const h = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { seq: string; chunkSize: number; files: string[]; sizes: number[] };
  if (h.seq !== lastSeq.toString() || h.chunkSize !== chunkSize || JSON.stringify(h.files) !== JSON.stringify(await fileStamps(volumes))) return undefined;
  if (h.sizes.length !== volumes.length || h.sizes.some((s, i) => s !== volumes[i]?.size)) return undefined;
  let at = nl + 1;
  const tables: ChunkTable[] = [];
  for (const v of volumes) {
    const n = Math.ceil(v.size / chunkSize);
    if (buf.length < at + n * 9) return undefined;
    const leaves = new BigUint64Array(n);
    for (let i = 0; i < n; i++) leaves[i] = buf.readBigUInt64LE(at + i * 8);
    at += n * 8;
    const dirty = new Uint8Array(buf.subarray(at, at + n));
    at += n;
    tables.push(new ChunkTable(v.size, chunkSize, leaves, dirty));
  }
  return at === buf.length ? tables : undefined;
}
