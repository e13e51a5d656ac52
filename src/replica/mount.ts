import { JshipError, isJshipError } from '../core/errors.js';
import type { NbdBackend, NbdExport, Extent } from '../nbd/export.js';
import { Errno, STATE_HOLE, STATE_ZERO } from '../nbd/protocol.js';
import type { KeyRing } from '../tape/crypto.js';
import { FramePool } from '../tape/frame-pool.js';
import { Replica } from './replica.js';
import { planRestore, type PointSpec, type RestorePlan } from './restore-plan.js';
import { Applier } from './restore.js';
import { ZERO_SOURCE, type ExtentMap } from '../core/extent-map.js';
import type { SegmentRow } from './catalog.js';
import { SegmentSource } from './segment-source.js';
import { Overlay, writableExport } from './overlay.js';
import { join } from 'node:path';
import { promises as fsp } from 'node:fs';
import { writePin } from './mount-pins.js';

export interface MountOptions {
  point: PointSpec;
  /** Volumes to serve (default: all). */
  volumes?: string[];
  keys?: KeyRing;
  /** Decrypted segment payloads kept (each up to ~2 MiB); default 64. */
  cacheSegments?: number;
  /** Take writes into a throw-away layer (sparse scratch files) instead of refusing them. */
  writable?: boolean;
  /** Where the scratch files go (default REPLICA_DIR/scratch). */
  scratchDir?: string;
  /** Leave the scratch files when the mount stops (default: removed). */
  keepScratch?: boolean;
}

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
  readonly replicaDir: string;
  readonly #source: SegmentSource;
  readonly #pin: string;
  readonly #pool: FramePool;
  readonly #overlays: Overlay[];
  readonly #keepScratch: boolean;

  private constructor(replicaDir: string, source: SegmentSource, pin: string, pool: FramePool, plan: RestorePlan, exports: NbdExport[], overlays: Overlay[], keepScratch: boolean) {
    this.replicaDir = replicaDir;
    this.#source = source;
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
    const replica = await Replica.open(dir);
    const pool = new FramePool();
    const overlays: Overlay[] = [];
    let source: SegmentSource | undefined;
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
      source = new SegmentSource(replica, opts.keys, { cacheSize: opts.cacheSegments ?? 64, pool });
      const tapes = [...new Set([...plan.updateSegments, ...plan.bases.flatMap((b) => b.segments)].map((s) => s.serial))];
      source.checkKeys(tapes);
      const sizes = vols.map((v) => v.size);
      const { maps, segments } = new Applier(cat, plan, { wanted }, sizes).pointMaps();
      const from = source;
      let exports = vols.flatMap((v, i) => (wanted[i] ? [volumeExport(v.name, maps[i] as ExtentMap, segments, from, plan)] : []));
      await source.hold(tapes);
      pin = await writePin(replica.dir, { point: plan.point, seq: plan.seq, tapes });
      locked = false;
      await replica.close();
      if (opts.writable) {
        const scratch = opts.scratchDir ?? join(replica.dir, 'scratch');
        const layered: NbdExport[] = [];
        for (const x of exports) {
          const o = await Overlay.create(scratch, x);
          overlays.push(o);
          layered.push(writableExport(x, o));
        }
        exports = layered;
      }
      return new PointMount(replica.dir, source, pin, pool, plan, exports, overlays, opts.keepScratch ?? false);
    } catch (e) {
      for (const o of overlays) await o.discard();
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
    const message = e instanceof Error ? e.message : String(e);
    if (isJshipError(e, 'VOLUME_NOT_USABLE')) return { errno: Errno.EPERM, message };
    // The scratch directory filled up: the client's write fails, nothing else is harmed.
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC') return { errno: Errno.ENOSPC, message };
    return { errno: Errno.EIO, message };
  }

  async close(): Promise<void> {
    for (const o of this.#overlays) await (this.#keepScratch ? o.close() : o.discard());
    await this.#source.release();
    await fsp.rm(this.#pin, { force: true });
    await this.#pool.close();
  }
}

function readOnly(name: string): never {
  throw new JshipError('VOLUME_NOT_USABLE', `"${name}" is a point in time served read-only`, { hint: 'restore it into a file to change it' });
}

function volumeExport(name: string, map: ExtentMap, segments: readonly SegmentRow[], source: SegmentSource, plan: RestorePlan): NbdExport {
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
        const payload = await source.payload(segments[x.source] as SegmentRow);
        const at = x.from + (from - x.start);
        payload.copy(out, from - offset, at, at + (to - from));
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
