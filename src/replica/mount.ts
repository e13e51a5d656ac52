import type { PointDigest } from '../core/volume-digest.js';
import { JshipError, asJshipError, isJshipError } from '../core/errors.js';
import type { NbdBackend, NbdExport, Extent } from '../nbd/export.js';
import { Errno, STATE_HOLE, STATE_ZERO } from '../nbd/protocol.js';
import type { KeyRing } from '../tape/crypto.js';
import { FramePool } from '../tape/frame-pool.js';
import { Replica, type ReplicaWait } from './replica.js';
import { planRestore, type PointSpec, type RestorePlan } from './restore-plan.js';
import { Applier } from './applier.js';
import { ZERO_SOURCE, type ExtentMap } from '../core/extent-map.js';
import type { SegmentRow } from './catalog.js';
import { SegmentSource, segmentWhere } from './segment-source.js';
import { recordBytes } from '../tape/segment.js';
import { Overlay, writableExport } from './overlay.js';
import { join } from 'node:path';
import { promises as fsp } from 'node:fs';
import { writePin } from './mount-pins.js';
import { PayloadCache } from './payload-cache.js';
import { ScratchNames, removeDeadScratch } from './scratch.js';

export interface MountOptions {
  point: PointSpec;
  /** How long to wait for the replica while another command uses it (a mount holds it only while it plans). */
  wait?: ReplicaWait;
  /** Volumes to serve (default: all). */
  volumes?: string[];
  keys?: KeyRing;
  /** Decrypted segment payloads kept (each up to ~2 MiB); default 64. */
  cacheSegments?: number;
  /** Take writes into a throw-away layer (sparse scratch files) instead of refusing them. */
  writable?: boolean;
  /** Where the scratch files (the read cache, a writable layer) go (default REPLICA_DIR/scratch). */
  scratchDir?: string;
  /** Leave the scratch files when the mount stops (default: removed). */
  keepScratch?: boolean;
  /** Bytes of decompressed segments kept in a scratch file for later reads (default 8 GiB; 0: none). */
  cacheBytes?: number;
}

const DEFAULT_CACHE_BYTES = 8 * 1024 ** 3;

/** Largest read one request may ask for (the NBD maximum block size). */
const MAX_BLOCK = 32 * 1024 * 1024;

/**
 * A point in time served read-only, straight from the replica's tapes: the
 * point is planned as `restore` plans it (same refusals), each volume's byte
 * ranges are mapped to the record that holds them at the point (newest
 * first wins), and reads decompress (and decrypt) only the segments they
 * touch, through a bounded cache. The replica is never written: writes
 * are refused, or (writable) go to a throw-away layer of scratch files.
 */
export class PointMount implements NbdBackend {
  readonly exports: readonly NbdExport[];
  readonly maxBlock = MAX_BLOCK;
  readonly plan: RestorePlan;
  /** The scratch files of a writable mount. */
  readonly scratch: readonly string[];
  /** The point as the replica holds it (below a writable layer): what a proof reads. */
  readonly point: readonly NbdExport[];
  /** The primary's digest of the point, when it is a restore point or a base completion whose tape brought one. */
  readonly digest: PointDigest | undefined;
  readonly replicaDir: string;
  readonly #source: SegmentSource;
  readonly #cache: PayloadCache | undefined;
  readonly #pin: string;
  readonly #pool: FramePool;
  readonly #overlays: Overlay[];
  readonly #keepScratch: boolean;

  private constructor(replicaDir: string, source: SegmentSource, cache: PayloadCache | undefined, pin: string, pool: FramePool, plan: RestorePlan, exports: NbdExport[], overlays: Overlay[], keepScratch: boolean, point: NbdExport[], digest: PointDigest | undefined) {
    this.replicaDir = replicaDir;
    this.point = point;
    this.digest = digest;
    this.#source = source;
    this.#cache = cache;
    this.#pin = pin;
    this.#pool = pool;
    this.plan = plan;
    this.exports = exports;
    this.#overlays = overlays;
    this.#keepScratch = keepScratch;
    this.scratch = overlays.map((o) => o.path);
  }

  /**
   * Plans the point and maps it under the replica's lock, opens the tapes it
   * reads, pins them (mounts/, so that `expire` keeps them) and lets go of
   * the replica: imports, link receivers and restores go on while it is
   * mounted, and the mounted point does not change.
   */
  static async open(dir: string, opts: MountOptions): Promise<PointMount> {
    const replica = await Replica.open(dir, opts.wait ? { wait: opts.wait } : {});
    const pool = new FramePool();
    const overlays: Overlay[] = [];
    let source: SegmentSource | undefined;
    let cache: PayloadCache | undefined;
    let pin: string | undefined;
    let locked = true;
    try {
      await replica.checkCatalogued();
      const cat = replica.catalog;
      const vols = replica.config.volumes;
      const names = opts.volumes && opts.volumes.length > 0 ? opts.volumes : vols.map((v) => v.name);
      const wanted = vols.map((v) => names.includes(v.name));
      for (const n of names) {
        if (!vols.some((v) => v.name === n)) throw new JshipError('USAGE', `the replica has no volume "${n}"`, { hint: `its volumes: ${vols.map((v) => v.name).join(', ')}` });
      }
      const plan = planRestore(cat, opts.point);
      source = new SegmentSource(replica, opts.keys, { cacheSize: opts.cacheSegments ?? 16, pool });
      const tapes = [...new Set([...plan.updateSegments, ...plan.bases.flatMap((b) => b.segments)].map((s) => s.serial))];
      source.checkKeys(tapes);
      const sizes = vols.map((v) => v.size);
      const { maps, segments } = new Applier(cat, plan, { wanted }, sizes).pointMaps();
      // Only the tapes whose bytes survive in the map are read (and held open): a long chain has hundreds.
      await source.hold(new Set(segments.map((s) => s.serial)));
      const scratch = opts.scratchDir ?? join(replica.dir, 'scratch');
      // What mounts that were killed left there goes first.
      await removeDeadScratch(scratch);
      const scratchNames = new ScratchNames(opts.keepScratch ?? false);
      const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
      // Without room for the cache (a read-only or full file system), reads decompress every time.
      if (cacheBytes > 0) cache = await PayloadCache.create(scratch, scratchNames.cache(), source, cacheBytes).catch(() => undefined);
      const from = source;
      const read = cache
        ? cache.read.bind(cache)
        : async (seg: SegmentRow, off: number, length: number, out: Buffer, at: number): Promise<void> => {
          recordBytes(await from.payload(seg), off, length, segmentWhere(seg)).copy(out, at);
        };
      let exports = vols.flatMap((v, i) => (wanted[i] ? [volumeExport(v.name, maps[i] as ExtentMap, segments, read, plan)] : []));
      pin = await writePin(replica.dir, { point: plan.point, seq: plan.seq, tapes });
      const digest = plan.inconsistent ? undefined : cat.digest(plan.seq);
      const point = exports;
      locked = false;
      await replica.close();
      if (opts.writable) {
        const layered: NbdExport[] = [];
        for (const x of exports) {
          const o = await Overlay.create(scratch, scratchNames.layer(x.name), x);
          overlays.push(o);
          layered.push(writableExport(x, o));
        }
        exports = layered;
      }
      return new PointMount(replica.dir, source, cache, pin, pool, plan, exports, overlays, opts.keepScratch ?? false, point, digest);
    } catch (e) {
      for (const o of overlays) await o.discard();
      await cache?.close();
      await source?.release();
      if (pin) await fsp.rm(pin, { force: true });
      await pool.close();
      if (locked) await replica.close();
      throw e;
    }
  }

  /** Nothing is ever written: a flush has nothing to do. */
  async flush(): Promise<void> {}

  errno(e: unknown): { errno: number; message: string } {
    // A system error says which file (the scratch file that filled up) and what it means.
    const message = asJshipError(e).message;
    if (isJshipError(e, 'VOLUME_NOT_USABLE')) return { errno: Errno.EPERM, message };
    // The scratch directory filled up: the client's write fails, nothing else is harmed.
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC') return { errno: Errno.ENOSPC, message };
    return { errno: Errno.EIO, message };
  }

  async close(): Promise<void> {
    for (const o of this.#overlays) await (this.#keepScratch ? o.close() : o.discard());
    await this.#cache?.close();
    await this.#source.release();
    await fsp.rm(this.#pin, { force: true });
    await this.#pool.close();
  }
}

function readOnly(name: string): never {
  throw new JshipError('VOLUME_NOT_USABLE', `"${name}" is a point in time served read-only`, { hint: 'restore it into a file to change it' });
}

type ReadPayload = (seg: SegmentRow, from: number, length: number, out: Buffer, at: number) => Promise<void>;

function volumeExport(name: string, map: ExtentMap, segments: readonly SegmentRow[], readPayload: ReadPayload, plan: RestorePlan): NbdExport {
  const size = map.size;
  return {
    name,
    size,
    readOnly: true,
    description: `${name} at ${plan.point} (seq ${plan.seq}), read-only`,
    async read(offset, length) {
      const out = Buffer.alloc(length);
      const end = offset + length;
      for (const x of map.extents(offset, length)) {
        if (x.source === ZERO_SOURCE) continue;
        const from = Math.max(offset, x.start);
        const to = Math.min(end, x.end);
        await readPayload(segments[x.source] as SegmentRow, x.from + (from - x.start), to - from, out, from - offset);
      }
      return out;
    },
    write: async () => readOnly(name),
    writeZeroes: async () => readOnly(name),
    trim: async () => readOnly(name),
    async cache() {},
    async blockStatus(offset, length) {
      const end = Math.min(size, offset + length);
      const out: Extent[] = [];
      const push = (len: number, flags: number): void => {
        const last = out[out.length - 1];
        if (last && last.flags === flags) last.length += len;
        else out.push({ length: len, flags });
      };
      let at = offset;
      for (const x of map.extents(offset, end - offset)) {
        if (x.start > at) push(x.start - at, STATE_HOLE | STATE_ZERO);
        const to = Math.min(end, x.end);
        push(to - Math.max(at, x.start), x.source === ZERO_SOURCE ? STATE_ZERO : 0);
        at = to;
      }
      if (at < end) push(end - at, STATE_HOLE | STATE_ZERO);
      return out;
    },
  };
}
