import { FLAG_BASE_ZERO, RecordType } from '../core/record.js';
import { indexDataOff, indexFlags, indexLength, indexOffset, indexRecordLength, indexSeq, indexType, indexVolume, readIndexEntry, type IndexEntry } from '../core/record-index.js';
import { ExtentMap, ZERO_SOURCE } from '../core/extent-map.js';
import { atPath } from '../core/errors.js';
import { recordBytes } from '../tape/segment.js';
import type { Catalog, SegmentRow } from './catalog.js';
import type { PlannedSegment, RestorePlan } from './restore-plan.js';
import { segmentWhere, type PayloadLease, type SegmentSource } from './segment-source.js';
import type { RestoreTarget } from './targets.js';
import type { WrittenRegions } from './prove.js';

interface Ref {
  e: IndexEntry;
  seg: SegmentRow;
}

/**
 * What a coalesced restore tells of final regions (Applier.#countdown):
 * `covered` says whether a region is claimed whole after a window (null:
 * the last window, after which every region is final); `done` marks, by
 * volume, the regions told already.
 */
interface Told {
  regions: WrittenRegions;
  covered: ((volume: number, start: number, end: number) => boolean) | null;
  done: Array<Uint8Array | undefined>;
}

/** A byte range a record won: [start, end) of its volume, `delta` bytes into the record. */
interface Claim {
  volume: number;
  start: number;
  end: number;
  delta: number;
}

/** What each wanted volume holds at the point: its extent map, whose sources index `segments`. */
export interface PointMaps {
  maps: Array<ExtentMap | undefined>;
  segments: SegmentRow[];
}

const CLAIM_WINDOW = 250_000;
/** Segments read ahead of the one being applied (an in-order replay's segment cache holds them and two more). */
export const READ_AHEAD = 3;
const WRITES_IN_FLIGHT = 8;
/** Segments whose writes may be in flight at once (each holds its payload's memory until they end). */
const SEGMENTS_WRITING = 2;

/**
 * The planned records (base records merged by position), streamed forward
 * or newest first, and written to targets — or, for a mount, only claimed:
 * which record's bytes each byte range of a volume holds at the point.
 */
export class Applier {
  bytesWritten = 0;
  readonly #cat: Catalog;
  readonly #plan: RestorePlan;
  readonly #targets: Array<RestoreTarget | undefined>;
  readonly #wantedVolumes: boolean[];
  readonly #source: SegmentSource | undefined;
  readonly #progress: ((done: number, total: number) => void) | undefined;
  /** Base records, merged by position: the segment (index into #baseSegs) and the entry in its index. */
  readonly #baseSegs: Array<{ seg: SegmentRow; idx: Buffer }> = [];
  readonly #baseSeg: Uint32Array;
  readonly #basePos: Uint32Array;
  readonly #sizes: number[];

  /** `targets`: one per volume (undefined: not restored), or `wanted` flags for `pointMaps` alone. */
  constructor(cat: Catalog, plan: RestorePlan, targets: Array<RestoreTarget | undefined> | { wanted: boolean[] }, sizes: number[], source?: SegmentSource, progress?: (done: number, total: number) => void) {
    this.#cat = cat;
    this.#sizes = sizes;
    this.#plan = plan;
    this.#targets = Array.isArray(targets) ? targets : sizes.map(() => undefined);
    this.#wantedVolumes = Array.isArray(targets) ? targets.map((t) => t !== undefined) : targets.wanted;
    this.#source = source;
    this.#progress = progress;
    // Kept compact (typed arrays and the index buffers, 48 bytes a record): a base of a large volume has a million records.
    let n = 0;
    for (const b of plan.bases) {
      for (const seg of [...b.segments].sort((x, y) => x.serial - y.serial || x.idx - y.idx)) {
        const idx = cat.recordIndex(seg.serial, seg.idx);
        this.#baseSegs.push({ seg, idx });
        n += indexLength(idx);
      }
    }
    const segOf = new Uint32Array(n);
    const posOf = new Uint32Array(n);
    const seqOf = new BigUint64Array(n);
    let k = 0;
    let sorted = true;
    for (const [si, { idx }] of this.#baseSegs.entries()) {
      for (let i = 0; i < indexLength(idx); i++) {
        const seq = indexSeq(idx, i);
        if (plan.inconsistent && seq > plan.seq) continue;
        if (k > 0 && seq < (seqOf[k - 1] as bigint)) sorted = false;
        segOf[k] = si;
        posOf[k] = i;
        seqOf[k] = seq;
        k++;
      }
    }
    if (sorted) {
      this.#baseSeg = segOf.subarray(0, k);
      this.#basePos = posOf.subarray(0, k);
    } else {
      // Stable by position: a resync base after the full base at the same position.
      const order = Uint32Array.from({ length: k }, (_v, i) => i).sort((a, b) => {
        const x = seqOf[a] as bigint;
        const y = seqOf[b] as bigint;
        return x < y ? -1 : x > y ? 1 : a - b;
      });
      this.#baseSeg = order.map((o) => segOf[o] as number);
      this.#basePos = order.map((o) => posOf[o] as number);
    }
  }

  #baseRef(k: number): Ref {
    const s = this.#baseSegs[this.#baseSeg[k] as number] as { seg: SegmentRow; idx: Buffer };
    return { e: readIndexEntry(s.idx, this.#basePos[k] as number), seg: s.seg };
  }

  #wanted(e: IndexEntry): boolean {
    return e.type !== RecordType.Marker && this.#wantedVolumes[e.volume] === true;
  }

  /**
   * What each wanted volume holds at the point (newest record first wins, as
   * `coalesced` writes it): every byte range and where it comes from, a
   * segment's payload or zeros. Ranges no record wrote are not in the map.
   */
  pointMaps(): PointMaps {
    const maps = this.#sizes.map((size, v) => (this.#wantedVolumes[v] ? new ExtentMap(size) : undefined));
    const segments: SegmentRow[] = [];
    const ids = new Map<SegmentRow, number>();
    const idOf = (seg: SegmentRow): number => {
      let id = ids.get(seg);
      if (id === undefined) ids.set(seg, (id = segments.push(seg) - 1));
      return id;
    };
    // The same walk as #all(true), in place over the index buffers: a mount's time to its first byte is this loop.
    const claim = (idx: Buffer, i: number, segId: number): void => {
      const type = indexType(idx, i);
      const map = maps[indexVolume(idx, i)];
      if (type === RecordType.Marker || !map) return;
      const zero = type === RecordType.Zero || type === RecordType.Trim || (type === RecordType.Base && (indexFlags(idx, i) & FLAG_BASE_ZERO) !== 0);
      const offset = indexOffset(idx, i);
      map.claim(offset, offset + indexRecordLength(idx, i), zero ? ZERO_SOURCE : segId, indexDataOff(idx, i));
    };
    // Source ids are given to every segment of the plan up front: unused ones only cost an array slot.
    const baseIds = this.#baseSegs.map((x) => idOf(x.seg));
    let b = this.#baseSeg.length - 1;
    const baseIdx = (k: number): Buffer => (this.#baseSegs[this.#baseSeg[k] as number] as { idx: Buffer }).idx;
    const claimBase = (k: number): void => claim(baseIdx(k), this.#basePos[k] as number, baseIds[this.#baseSeg[k] as number] as number);
    const segs = this.#plan.updateSegments;
    for (let s = segs.length - 1; s >= 0; s--) {
      const seg = segs[s] as PlannedSegment;
      const id = idOf(seg);
      const idx = this.#cat.recordIndex(seg.serial, seg.idx);
      for (let i = indexLength(idx) - 1; i >= 0; i--) {
        const seq = indexSeq(idx, i);
        if (seq < seg.first || seq > seg.last) continue;
        // Base records at this position or later are newer than the update: they claim first.
        for (; b >= 0 && indexSeq(baseIdx(b), this.#basePos[b] as number) >= seq; b--) claimBase(b);
        claim(idx, i, id);
      }
    }
    for (; b >= 0; b--) claimBase(b);
    return { maps, segments };
  }

  *#updates(reverse: boolean): Generator<Ref> {
    const segs = reverse ? [...this.#plan.updateSegments].reverse() : this.#plan.updateSegments;
    for (const seg of segs) {
      const idx = this.#cat.recordIndex(seg.serial, seg.idx);
      const n = indexLength(idx);
      for (let k = 0; k < n; k++) {
        const e = readIndexEntry(idx, reverse ? n - 1 - k : k);
        if (e.seq < seg.first || e.seq > seg.last) continue;
        yield { e, seg };
      }
    }
  }

  /** Every record of the plan in replay order (forward) or its exact reverse. */
  *#all(reverse: boolean): Generator<Ref> {
    const n = this.#baseSeg.length;
    if (!reverse) {
      let b = 0;
      let next = n > 0 ? this.#baseRef(0) : undefined;
      for (const u of this.#updates(false)) {
        while (next && next.e.seq < u.e.seq) {
          yield next;
          next = ++b < n ? this.#baseRef(b) : undefined;
        }
        yield u;
      }
      while (next) {
        yield next;
        next = ++b < n ? this.#baseRef(b) : undefined;
      }
    } else {
      let b = n - 1;
      let next = b >= 0 ? this.#baseRef(b) : undefined;
      for (const u of this.#updates(true)) {
        while (next && next.e.seq >= u.e.seq) {
          yield next;
          next = --b >= 0 ? this.#baseRef(b) : undefined;
        }
        yield u;
      }
      while (next) {
        yield next;
        next = --b >= 0 ? this.#baseRef(b) : undefined;
      }
    }
  }

  /**
   * Newest record first: each byte goes to the last record that wrote it;
   * written once, grouped by segment. `regions` is told of each region of
   * a target as soon as nothing more will be written there (a restore's
   * proof reads it back then).
   */
  async coalesced(regions?: WrittenRegions, claimWindow = CLAIM_WINDOW): Promise<void> {
    const maps = this.#sizes.map((size, v) => (this.#wantedVolumes[v] ? new ExtentMap(size) : undefined));
    // A region every byte of which is claimed is final once this window's writes there end: older records claim none of it.
    const covered = (volume: number, start: number, end: number): boolean => (maps[volume] as ExtentMap).covers(start, end);
    // Regions told final in an earlier window, by volume (each is told once).
    const done: Array<Uint8Array | undefined> = [];
    let pending: Array<{ c: Claim; r: Ref }> = [];
    for (const r of this.#all(true)) {
      if (!this.#wanted(r.e)) continue;
      const { volume, offset } = r.e;
      // Only what is claimed matters here (each record's bytes are written as they are won): claimed as
      // zeros, the claimed ranges merge and the map stays as small as the union of what was written.
      (maps[volume] as ExtentMap).claim(offset, offset + r.e.length, ZERO_SOURCE, 0, (start, end) => pending.push({ c: { volume, start, end, delta: start - offset }, r }));
      if (pending.length >= claimWindow) {
        await this.#writeClaims(pending, regions && { regions, covered, done });
        pending = [];
      }
    }
    // The last window: every claim left is in it, so every region is final once its writes in it end.
    await this.#writeClaims(pending, regions && { regions, covered: null, done });
  }

  async #writeClaims(claims: Array<{ c: Claim; r: Ref }>, told?: Told): Promise<void> {
    const bySeg = new Map<string, Array<{ c: Claim; r: Ref }>>();
    for (const x of claims) {
      if (isZero(x.r.e)) {
        const t = this.#targets[x.c.volume] as RestoreTarget;
        if (!t.fresh) await t.zero(x.c.start, x.c.end - x.c.start);
        this.bytesWritten += t.fresh ? 0 : x.c.end - x.c.start;
        continue;
      }
      const k = `${x.r.seg.serial}:${x.r.seg.idx}`;
      const list = bySeg.get(k);
      if (list) list.push(x);
      else bySeg.set(k, [x]);
    }
    const lists = [...bySeg.values()];
    for (const list of lists) list.sort((a, b) => a.c.volume - b.c.volume || a.c.start - b.c.start);
    const written = told ? this.#countdown(told, claims, lists) : () => undefined;
    const source = this.#source as SegmentSource;
    // Straight into the targets' files on the pool's workers, where every segment and target allows it:
    // no payload crosses to this thread, which only plans.
    if (lists.every((l) => source.writesParts((l[0] as { r: Ref }).r.seg)) && this.#targets.every((t) => !t || t.direct)) {
      await this.#writeParts(lists, written);
      return;
    }
    let done = 0;
    // Read ahead: the next segments decompress on the worker pool while this one is written.
    const ahead = new Map<number, Promise<PayloadLease>>();
    const fetch = (i: number): void => {
      const l = lists[i];
      if (l && !ahead.has(i)) {
        const p = source.lease((l[0] as { r: Ref }).r.seg);
        p.catch(() => undefined);
        ahead.set(i, p);
      }
    };
    // Claims are disjoint: a segment's writes need not wait for the one before's, and several writes in flight keep the target busy.
    const writing: Array<Promise<void>> = [];
    try {
      for (const [i, list] of lists.entries()) {
        for (let k = i; k < i + READ_AHEAD; k++) fetch(k);
        const lease = await (ahead.get(i) as Promise<PayloadLease>);
        ahead.delete(i);
        const w = this.#writeList(list, lease.payload).then(() => written(i)).finally(() => {
          lease.release();
          this.#progress?.(++done, bySeg.size);
        });
        w.catch(() => undefined);
        writing.push(w);
        if (writing.length >= SEGMENTS_WRITING) await writing.shift();
      }
      await Promise.all(writing);
    } finally {
      // A failure leaves nothing running: writes in flight end, leases read ahead go back.
      await Promise.allSettled(writing);
      for (const p of ahead.values()) p.then((l) => l.release(), () => undefined);
    }
  }

  /**
   * Each segment's claims (sorted, disjoint) written by a worker of the
   * pool (SegmentSource.writeParts), as many segments at once as the
   * workers take. After a failure no segment more is started, and those
   * running end before it is thrown: no worker writes a target's
   * descriptor once its caller may close it.
   */
  async #writeParts(lists: Array<Array<{ c: Claim; r: Ref }>>, written: (list: number) => void): Promise<void> {
    const source = this.#source as SegmentSource;
    const running = new Set<Promise<void>>();
    let failed: { error: unknown } | undefined;
    let done = 0;
    try {
      for (const [i, list] of lists.entries()) {
        const parts = new Float64Array(list.length * 4);
        for (const [k, { c, r }] of list.entries()) parts.set([this.#direct(c.volume).fd, c.start, r.e.dataOff + c.delta, c.end - c.start], k * 4);
        const p = source.writeParts((list[0] as { r: Ref }).r.seg, parts).then((n) => {
          for (const { c } of list) this.#direct(c.volume).wrote(c.start, c.end - c.start);
          written(i);
          this.bytesWritten += n;
          this.#progress?.(++done, lists.length);
        }, (e: unknown) => {
          failed ??= { error: this.#named(e) };
        }).finally(() => running.delete(p));
        running.add(p);
        if (running.size >= source.partsInFlight) await Promise.race(running);
        if (failed) break;
      }
    } finally {
      await Promise.all(running);
    }
    if (failed) throw failed.error;
  }

  /**
   * Counts, for each region that is final after this window, the segments
   * of the window that write into it; tells `regions` at once of those none
   * writes (every earlier write has ended) and returns what to call as each
   * segment's writes end: a region is final once the last of its segments
   * is written. After the last window every region is final; after another,
   * those this window claimed into that are claimed whole (`covered`).
   * Typed arrays by volume and region: a window has up to 250 000 claims.
   */
  #countdown(told: Told, claims: ReadonlyArray<{ c: Claim }>, lists: ReadonlyArray<ReadonlyArray<{ c: Claim }>>): (list: number) => void {
    const { regions, covered, done } = told;
    const rb = regions.regionBytes;
    const count = (v: number): number => Math.ceil((this.#sizes[v] as number) / rb);
    for (const [v] of this.#sizes.entries()) if (this.#targets[v]) done[v] ??= new Uint8Array(count(v));
    // Per region: -1 while it is not final after this window; else this window's segments still to write there.
    const left = this.#sizes.map((_size, v) => (this.#targets[v] ? new Int32Array(count(v)).fill(-1) : undefined));
    if (covered) {
      const looked = left.map((l) => l && new Uint8Array(l.length));
      for (const { c } of claims) {
        const seen = looked[c.volume] as Uint8Array;
        const already = done[c.volume] as Uint8Array;
        for (let r = Math.floor(c.start / rb); r <= Math.floor((c.end - 1) / rb); r++) {
          if (seen[r] === 1 || already[r] === 1) continue;
          seen[r] = 1;
          if (covered(c.volume, r * rb, Math.min((r + 1) * rb, this.#sizes[c.volume] as number))) (left[c.volume] as Int32Array)[r] = 0;
        }
      }
    } else {
      for (const [v, l] of left.entries()) if (l) for (let r = 0; r < l.length; r++) if ((done[v] as Uint8Array)[r] === 0) l[r] = 0;
    }
    // Each segment's regions, as volume and region pairs (its claims are sorted: a repeat is the last pair pushed).
    const regionsOf = lists.map((list) => {
      const pairs: number[] = [];
      for (const { c } of list) {
        const l = left[c.volume] as Int32Array;
        for (let r = Math.floor(c.start / rb); r <= Math.floor((c.end - 1) / rb); r++) {
          if ((l[r] as number) < 0 || (pairs[pairs.length - 2] === c.volume && pairs[pairs.length - 1] === r)) continue;
          pairs.push(c.volume, r);
          l[r] = (l[r] as number) + 1;
        }
      }
      return pairs;
    });
    const final = (v: number, r: number): void => {
      (done[v] as Uint8Array)[r] = 1;
      regions.final(v, r);
    };
    for (const [v, l] of left.entries()) if (l) for (let r = 0; r < l.length; r++) if (l[r] === 0) final(v, r);
    return (list) => {
      const pairs = regionsOf[list] ?? [];
      for (let i = 0; i < pairs.length; i += 2) {
        const v = pairs[i] as number;
        const r = pairs[i + 1] as number;
        const l = left[v] as Int32Array;
        l[r] = (l[r] as number) - 1;
        if (l[r] === 0) final(v, r);
      }
    };
  }

  #direct(volume: number): NonNullable<RestoreTarget['direct']> {
    return (this.#targets[volume] as RestoreTarget).direct as NonNullable<RestoreTarget['direct']>;
  }

  /** A target's failed write (SegmentSource.writeParts) named by the target's path. */
  #named(e: unknown): unknown {
    const fd = (e as { targetFd?: unknown }).targetFd;
    const t = fd === undefined ? undefined : this.#targets.find((x) => x?.direct?.fd === fd);
    return t ? atPath(e, t.path) : e;
  }

  /** Writes a segment's claims (sorted, disjoint) from its payload, several at once. */
  async #writeList(list: Array<{ c: Claim; r: Ref }>, payload: Buffer): Promise<void> {
    let next = 0;
    const writer = async (): Promise<void> => {
      while (next < list.length) {
        const { c, r } = list[next++] as { c: Claim; r: Ref };
        await (this.#targets[c.volume] as RestoreTarget).write(c.start, recordBytes(payload, r.e.dataOff + c.delta, c.end - c.start, segmentWhere(r.seg)));
        this.bytesWritten += c.end - c.start;
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITES_IN_FLIGHT, list.length) }, writer));
  }

  /** Every record in sequence order, as a naive replay does (also the path for records not on sector boundaries). */
  async inOrder(): Promise<void> {
    for (const r of this.#all(false)) {
      if (!this.#wanted(r.e)) continue;
      const t = this.#targets[r.e.volume] as RestoreTarget;
      if (isZero(r.e)) await t.zero(r.e.offset, r.e.length);
      else {
        const payload = await (this.#source as SegmentSource).payload(r.seg);
        await t.write(r.e.offset, recordBytes(payload, r.e.dataOff, r.e.length, segmentWhere(r.seg)));
      }
      this.bytesWritten += r.e.length;
    }
  }
}

function isZero(e: IndexEntry): boolean {
  return e.type === RecordType.Zero || e.type === RecordType.Trim || (e.type === RecordType.Base && (e.flags & FLAG_BASE_ZERO) !== 0);
}
