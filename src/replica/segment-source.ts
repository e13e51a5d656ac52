import { promises as fsp } from 'node:fs';
import type { FramePool } from '../tape/frame-pool.js';
import { JshipError, atPath } from '../core/errors.js';
import { cataloguedFrame } from '../core/zstd-frames.js';
import { KeyRing, missingKey } from '../tape/crypto.js';
import { SEGMENT_HEADER_SIZE, STORED_TAPE_CHANGED, expectSegment, openSegment, type ExpectedSegment } from '../tape/segment.js';
import { frameEntries } from '../tape/tar-entry.js';
import type { SegmentRow } from './catalog.js';
import type { Replica } from './replica.js';

/** Tapes a source keeps open between reads. */
const OPEN_TAPES = 4;

/** A tape kept open: its open (maybe still running), its readers now, whether it is still among the kept few. */
interface OpenTape {
  readonly opening: Promise<fsp.FileHandle>;
  readers: number;
  kept: boolean;
}

/**
 * Reads single segments out of the stored tapes by their frame offsets:
 * one frame read, decompressed (zstd checks its content checksum), its
 * segment header checked against the catalogue, and decrypted. A small cache
 * serves records that come from the same segment. The SHA-256 was checked at
 * import; the store is the replica's own.
 */
export class SegmentSource {
  readonly #replica: Replica;
  readonly #keys: KeyRing | undefined;
  readonly #files = new Map<number, { path: string; keyId: string | null; mediaSet: string }>();
  readonly #cache = new Map<string, Buffer>();
  /** Segments being read now: concurrent readers of one segment share its decompression. */
  readonly #loading = new Map<string, Promise<Buffer>>();
  readonly #cacheSize: number;
  /** Tapes opened once and read through their handles (a mount, which outlives its hold on the replica). */
  readonly #held = new Map<number, fsp.FileHandle>();
  /**
   * The tapes read last, kept open (most recent last): a restore reads a
   * tape's segments one after another. Each counts its readers from the
   * moment they ask (before the open resolves); one pushed out of the kept
   * few is closed when its last reader is done, never under one.
   */
  readonly #open = new Map<number, OpenTape>();
  read = 0;

  readonly #pool: FramePool | undefined;

  constructor(replica: Replica, keys: KeyRing | undefined, opts: { cacheSize?: number; pool?: FramePool } = {}) {
    this.#pool = opts.pool;
    this.#replica = replica;
    this.#keys = keys;
    this.#cacheSize = opts.cacheSize ?? 4;
    for (const t of replica.catalog.tapes()) this.#files.set(t.serial, { path: replica.tapePath(t.file), keyId: t.keyId, mediaSet: t.mediaSet });
  }

  /** Refuses up front when a tape the restore needs is encrypted and no (or another) key was given. */
  checkKeys(serials: Iterable<number>): void {
    for (const s of serials) {
      const f = this.#files.get(s);
      if (f?.keyId && !this.#keys?.has(f.keyId)) throw missingKey(f.keyId, `tape ${s}`, this.#keys);
    }
  }

  /**
   * Opens these tapes now and reads them through the handles from then on:
   * what they hold stays readable as it was even when an import replaces a
   * tape file (renamed over) or it is removed.
   */
  async hold(serials: Iterable<number>): Promise<void> {
    for (const s of serials) {
      const f = this.#files.get(s);
      if (!f || this.#held.has(s)) continue;
      this.#held.set(s, await fsp.open(f.path, 'r'));
    }
  }

  /** Closes every tape it holds, and every kept one nothing reads (one still read is closed by its last reader). */
  async release(): Promise<void> {
    for (const h of this.#held.values()) await h.close();
    this.#held.clear();
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(open.map((t) => this.#drop(t)));
  }

  /** A handle on a tape: held, or opened and kept among the last few (the oldest closed once its readers are done). */
  async #handle(serial: number, path: string): Promise<{ h: fsp.FileHandle; done: () => Promise<void> }> {
    const held = this.#held.get(serial);
    if (held) return { h: held, done: async () => undefined };
    let t = this.#open.get(serial);
    if (t) {
      this.#open.delete(serial);
    } else {
      const opening = fsp.open(path, 'r');
      opening.catch(() => undefined);
      t = { opening, readers: 0, kept: true };
    }
    this.#open.set(serial, t);
    t.readers++;
    while (this.#open.size > OPEN_TAPES) {
      const [oldest, o] = this.#open.entries().next().value as [number, OpenTape];
      this.#open.delete(oldest);
      void this.#drop(o);
    }
    const tape = t;
    const done = async (): Promise<void> => {
      tape.readers--;
      if (!tape.kept) await this.#drop(tape);
    };
    try {
      return { h: await tape.opening, done };
    } catch (e) {
      if (this.#open.get(serial) === tape) this.#open.delete(serial);
      await done();
      throw e;
    }
  }

  /** No longer kept: closed now if nothing reads it, else by its last reader. */
  async #drop(t: OpenTape): Promise<void> {
    t.kept = false;
    if (t.readers > 0) return;
    const h = await t.opening.catch(() => null);
    await h?.close().catch(() => undefined);
  }

  /**
   * A segment's payload for one reader, not cached: decompressed into memory
   * used before, which `release` hands back (nothing may read the payload
   * after). A restore reads each segment once, and fresh memory for every
   * segment cost more in page faults and garbage collection than the copying.
   */
  async lease(seg: SegmentRow): Promise<PayloadLease> {
    const { payload, release } = await this.#load(seg, true);
    return { payload, release: release ?? (() => undefined) };
  }

  /** The decrypted records payload of a segment. */
  payload(seg: SegmentRow): Promise<Buffer> {
    const k = `${seg.serial}:${seg.idx}`;
    const hit = this.#cache.get(k);
    if (hit) {
      this.#cache.delete(k);
      this.#cache.set(k, hit);
      return Promise.resolve(hit);
    }
    let p = this.#loading.get(k);
    if (!p) {
      p = this.#load(seg, false).then(({ payload }) => {
        this.#cache.set(k, payload);
        if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value as string);
        return payload;
      }).finally(() => this.#loading.delete(k));
      this.#loading.set(k, p);
    }
    return p;
  }

  /**
   * Whether `writeParts` takes this segment: with a pool, from a tape
   * catalogued as plaintext (an encrypted segment is opened on this thread,
   * where its key is).
   */
  writesParts(seg: SegmentRow): boolean {
    const f = this.#files.get(seg.serial);
    return this.#pool !== undefined && f !== undefined && f.keyId === null;
  }

  /** Segments `writeParts` keeps busy at once: what the pool's workers take. */
  get partsInFlight(): number {
    return this.#pool?.capacity ?? 1;
  }

  /**
   * Writes parts of a segment's records straight into the targets' files,
   * on a worker of the pool (tape/segment-parts.ts; flattened fours of
   * target descriptor, position, offset into the records, length): the
   * bytes written. The segment is checked as `lease` checks it. A target's
   * failed write comes back with its `targetFd`, for the caller to name.
   */
  async writeParts(seg: SegmentRow, parts: Float64Array): Promise<number> {
    const f = this.#files.get(seg.serial);
    if (!f) throw new JshipError('REPLICA_BAD', `tape ${seg.serial} is catalogued but not stored`, { hint: 'jship catalog --rebuild' });
    if (!this.#pool || f.keyId !== null) throw new Error('writeParts of a segment it does not take (writesParts)');
    const { h, done } = await this.#handle(seg.serial, f.path);
    try {
      const n = await this.#pool.writeParts({ fd: h.fd, offset: seg.frameOffset, length: seg.frameLength, where: `${f.path} segment ${seg.idx}`, expect: this.#expected(seg, f), parts });
      this.read++;
      return n;
    } catch (e) {
      // A system error that is not a target's came from reading the tape.
      throw (e as { targetFd?: unknown }).targetFd === undefined ? atPath(e, f.path) : e;
    } finally {
      await done();
    }
  }

  #expected(seg: SegmentRow, f: { keyId: string | null; mediaSet: string }): ExpectedSegment {
    return { firstSeq: seg.firstSeq, lastSeq: seg.lastSeq, count: seg.records, groupId: this.#replica.config.groupId, mediaSetId: f.mediaSet, plaintext: f.keyId === null };
  }

  /** Reads, checks and opens a segment; with `recycle`, into the pool's memory, which `release` hands back. */
  async #load(seg: SegmentRow, recycle: boolean): Promise<{ payload: Buffer; release?: () => void }> {
    const f = this.#files.get(seg.serial);
    if (!f) throw new JshipError('REPLICA_BAD', `tape ${seg.serial} is catalogued but not stored`, { hint: 'jship catalog --rebuild' });
    const { h, done } = await this.#handle(seg.serial, f.path);
    const frame = this.#pool ? this.#pool.frameBuffer(seg.frameLength) : Buffer.alloc(seg.frameLength);
    try {
      const { bytesRead } = await h.read(frame, 0, seg.frameLength, seg.frameOffset);
      if (bytesRead !== seg.frameLength) throw new JshipError('TAPE_DAMAGED', `${f.path} segment ${seg.idx} is cut short (${bytesRead} of ${seg.frameLength} bytes)`, { hint: STORED_TAPE_CHANGED });
    } finally {
      await done();
    }
    const where = `${f.path} segment ${seg.idx}`;
    let content: Buffer;
    let release: (() => void) | undefined;
    try {
      const s = cataloguedFrame(frame);
      // Not hashed: nothing here compares it (the segment was checked whole when imported; zstd checks the frame's content checksum as it decompresses).
      let entries;
      if (this.#pool) {
        const u = await this.#pool.unframe(frame, { hash: false, handOver: true, ...(recycle ? { recycle: s.contentSize } : {}) });
        entries = u.entries;
        release = u.release;
      } else {
        entries = await frameEntries(frame, where);
      }
      content = entries[0]?.content ?? Buffer.alloc(0);
    } catch (e) {
      throw new JshipError('TAPE_DAMAGED', `${where} cannot be read: ${(e as Error).message}`, { hint: STORED_TAPE_CHANGED, cause: e });
    }
    try {
      const sh = expectSegment(content, this.#expected(seg, f), where);
      let payload = content.subarray(SEGMENT_HEADER_SIZE);
      if (sh.encrypted) {
        // expectSegment refused one in a tape catalogued as plaintext: this tape has a key id.
        payload = openSegment((this.#keys ?? new KeyRing([])).need(f.keyId as string, where), content, sh, where);
        // The decrypted payload is memory of its own: the decompressed frame is done with.
        release?.();
        release = undefined;
      }
      this.read++;
      return release ? { payload, release } : { payload };
    } catch (e) {
      release?.();
      throw e;
    }
  }
}

/** A segment as the error about one of its records names it. */
export function segmentWhere(seg: SegmentRow): string {
  return `tape ${seg.serial} segment ${seg.idx}`;
}

/** A segment's payload lent to one reader until it calls `release`. */
export interface PayloadLease {
  payload: Buffer;
  release(): void;
}
