import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ChunkTable, DIGEST_ALGORITHM, checkPointDigest, groupRoot, leafHasher, type LeafHash, type PointDigest } from '../core/volume-digest.js';
import { writeFileAtomic } from '../io/files.js';
import type { Volume } from '../volume/volume.js';
import type { RangeOrder } from './range-order.js';

/** A point whose digest is being computed: the chunks it has still to read, and the leaves read for it. */
interface Point {
  seq: bigint;
  kind: PointDigest['kind'];
  name: string | undefined;
  /** Per volume, 1 for each chunk still to read for this point. */
  pending: Uint8Array[];
  /** Per volume, the leaves read for this point (applied to the table in marker order). */
  leaves: Array<Map<number, bigint>>;
  reads: Array<Promise<void>>;
}

/** Where a group keeps its point digests (one JSON line each) and, between a clean close and the next open, its chunk table. */
export const digestPaths = (dir: string): { log: string; table: string } => ({ log: join(dir, 'digests.jsonl'), table: join(dir, 'digest-table.bin') });

/** What identifies the volume files the saved table was taken of (an out-of-band change makes it worthless), volume by volume. */
async function fileStamps(volumes: readonly Volume[]): Promise<string[][]> {
  return Promise.all(volumes.map((v) => Promise.all(v.extents.map(async (e) => {
    const st = await fsp.stat(e.path);
    return `${e.path}:${st.size}:${st.mtimeMs}`;
  }))));
}

/**
 * The primary's point digests (core/volume-digest.ts): a chunk table per
 * volume whose leaves are brought up to date at each restore point and base
 * completion — only the chunks written since the last one are read, in the
 * background, each read ordered after every write before the marker; a
 * later write to a chunk not yet read waits for that one chunk's read
 * (copy-on-write), so each digest is the volumes exactly at its marker and
 * writes never wait for more than one chunk. Digests are
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
  /** Points whose chunks are still being read. */
  readonly #points: Point[] = [];
  readonly #order: RangeOrder;
  readonly #volumes: readonly Volume[];
  /** Volume reads of one digest at a time: digests are computed in marker order. */
  #last: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, tables: ChunkTable[], hash: LeafHash, order: RangeOrder, volumes: readonly Volume[]) {
    this.#dir = dir;
    this.#order = order;
    this.#volumes = volumes;
    this.#tables = tables;
    this.#hash = hash;
  }

  /**
   * The volumes whose files changed since the clean close that saved the
   * table (size or last write): written outside jship. Empty when none did,
   * or when there was no table to compare with (the first open, a crash).
   */
  changedOutside: readonly string[] = [];

  static async open(dir: string, volumes: readonly Volume[], chunkSize: number, lastSeq: bigint, order: RangeOrder): Promise<PointDigests> {
    const paths = digestPaths(dir);
    const saved = await loadTable(paths.table, volumes, chunkSize, lastSeq).catch(() => undefined);
    const tables = saved && 'tables' in saved ? saved.tables : undefined;
    // Used once: a crash after this open must not find a table that no longer matches the volumes.
    await fsp.rm(paths.table, { force: true });
    const d = new PointDigests(dir, tables ?? volumes.map((v) => new ChunkTable(v.size, chunkSize)), await leafHasher(), order, volumes);
    if (saved && 'changed' in saved) d.changedOutside = saved.changed;
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

  /**
   * Before a write is ordered (same tick, right before its PVOL write is
   * registered): a chunk it touches that a point still in progress has yet
   * to read is read first — the point's bytes, before this write lands
   * (copy-on-write). Then the chunk is dirty for the next point.
   */
  beforeWrite(volume: number, offset: number, length: number): void {
    const t = this.#tables[volume];
    if (!t || length <= 0) return;
    if (this.#points.length > 0) {
      const last = Math.min(t.chunks - 1, Math.floor((offset + length - 1) / t.chunkSize));
      for (const p of this.#points) {
        for (let c = Math.floor(offset / t.chunkSize); c <= last; c++) if (p.pending[volume]?.[c] === 1) this.#claim(p, volume, c);
      }
    }
    t.markDirty(offset, length);
  }

  /**
   * Starts the digest of the point at `seq`. Must be called in the same
   * tick as `seq` was given out: the chunks written since the last point are
   * taken now (later writes to them are read around, see beforeWrite); they
   * are read in the background, one at a time, so writes never wait for more
   * than one chunk read. Resolves once the digest is computed and logged.
   */
  begin(seq: bigint, kind: PointDigest['kind'], name: string | undefined): Promise<PointDigest> {
    const p: Point = {
      seq, kind, name, reads: [],
      pending: this.#tables.map((t) => {
        const flags = new Uint8Array(t.chunks);
        for (const [first, count] of t.takeDirty()) flags.fill(1, first, first + count);
        return flags;
      }),
      leaves: this.#tables.map(() => new Map<number, bigint>()),
    };
    this.#points.push(p);
    const before = this.#last;
    const run = (async () => {
      try {
        // The chunks nobody wrote meanwhile, in order, each read ordered after the writes before it.
        for (const [v, flags] of p.pending.entries()) {
          for (let c = flags.indexOf(1); c >= 0; c = flags.indexOf(1, c + 1)) {
            this.#claim(p, v, c);
            await p.reads[p.reads.length - 1];
          }
        }
        await Promise.all(p.reads);
        // Applied in marker order: the leaves of the points before are in the table first.
        await before;
        for (const [v, m] of p.leaves.entries()) {
          const t = this.#tables[v] as ChunkTable;
          for (const [c, h] of m) t.leaves[c] = h;
        }
      } catch (e) {
        // What this point took is read again at the next one.
        for (const [v, flags] of p.pending.entries()) {
          const t = this.#tables[v] as ChunkTable;
          for (let c = 0; c < flags.length; c++) if (flags[c] === 1 || p.leaves[v]?.has(c)) t.dirty[c] = 1;
        }
        throw e;
      } finally {
        this.#points.splice(this.#points.indexOf(p), 1);
      }
      const vols = this.#tables.map((t, v) => ({ name: (this.#volumes[v] as Volume).name, size: t.size, root: t.root() }));
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
    })();
    // The next point applies its leaves after these.
    this.#last = run.catch(() => undefined);
    const key = seq.toString();
    this.#pending.set(key, run);
    void run.finally(() => this.#pending.delete(key)).catch(() => undefined);
    return run;
  }

  /** Reads chunk `c` of volume `v` for point `p`: ordered now, after every write before this moment. */
  #claim(p: Point, v: number, c: number): void {
    const flags = p.pending[v] as Uint8Array;
    flags[c] = 0;
    const t = this.#tables[v] as ChunkTable;
    const [off, len] = t.range(c);
    const op = this.#order.register(v, off, len);
    const read = (async () => {
      try {
        await op.ready;
        p.leaves[v]?.set(c, this.#hash(await (this.#volumes[v] as Volume).read(off, len)));
      } finally {
        op.finish();
      }
    })();
    read.catch(() => undefined);
    p.reads.push(read);
  }

  /** The digests of the points in [first, last], waiting for those still being computed. */
  async between(first: bigint, last: bigint): Promise<PointDigest[]> {
    const inRange = (s: string): boolean => BigInt(s) >= first && BigInt(s) <= last;
    await Promise.allSettled([...this.#pending].filter(([s]) => inRange(s)).map(([, p]) => p));
    return [...this.#known.values()].filter((d) => inRange(d.seq)).sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
  }

  /** Resolves when no digest is being computed. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#pending.values()]);
  }

  /** Keeps the table for the next open (a clean close, after the last record `lastSeq`). */
  async save(volumes: readonly Volume[], lastSeq: bigint): Promise<void> {
    await this.settled();
    const header = Buffer.from(`${JSON.stringify({ seq: lastSeq.toString(), chunkSize: this.#tables[0]?.chunkSize, files: (await fileStamps(volumes)).flat(), sizes: this.#tables.map((t) => t.size) })}\n`);
    const parts: Buffer[] = [header];
    for (const t of this.#tables) {
      const leaves = Buffer.alloc(t.chunks * 8);
      t.leaves.forEach((l, i) => leaves.writeBigUInt64LE(l, i * 8));
      parts.push(leaves, Buffer.from(t.dirty));
    }
    await writeFileAtomic(digestPaths(this.#dir).table, Buffer.concat(parts));
  }
}

/**
 * The table saved at the last clean close, if it still describes the
 * volumes; else, when only the volume files' stamps differ (the same
 * journal, the same files), the volumes whose files changed since.
 */
async function loadTable(path: string, volumes: readonly Volume[], chunkSize: number, lastSeq: bigint): Promise<{ tables: ChunkTable[] } | { changed: string[] } | undefined> {
  const buf = await fsp.readFile(path);
  const nl = buf.indexOf(10);
  const h = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { seq: string; chunkSize: number; files: string[]; sizes: number[] };
  if (h.seq !== lastSeq.toString() || h.chunkSize !== chunkSize) return undefined;
  const stamps = await fileStamps(volumes);
  if (JSON.stringify(h.files) !== JSON.stringify(stamps.flat())) return outsideChanges(h.files, stamps, volumes);
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
  return at === buf.length ? { tables } : undefined;
}

/** The volumes whose extent files changed (size or last write), when the files are the same ones as saved; else nothing is claimed. */
function outsideChanges(saved: string[], now: string[][], volumes: readonly Volume[]): { changed: string[] } | undefined {
  const file = (stamp: string): string => stamp.slice(0, stamp.lastIndexOf(':', stamp.lastIndexOf(':') - 1));
  const flat = now.flat();
  if (saved.length !== flat.length || saved.some((x, i) => file(x) !== file(flat[i] as string))) return undefined;
  let i = 0;
  const changed: string[] = [];
  for (const [k, v] of volumes.entries()) {
    for (const stamp of now[k] as string[]) if (stamp !== saved[i++] && !changed.includes(v.name)) changed.push(v.name);
  }
  return { changed };
}
