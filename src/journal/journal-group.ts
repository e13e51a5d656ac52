import { promises as fsp } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { JshipError } from '../core/errors.js';
import { deferred } from '../core/deferred.js';
import { MINUTE_NS, RateWindow, forecast, type JournalCounters, type JournalForecast, type JournalRate } from '../core/journal-rates.js';
import type { EventLog } from '../core/events.js';
import { MonotonicClock, systemMonoNs, systemWallClock, type ClockStep } from '../core/clock.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_POLICY, type GroupConfig, type JournalFullPolicy } from '../core/group-config.js';
import { epochStart, generationOf, lineageText, type Lineage } from '../core/epoch.js';
import { checkMarkerName, decodeMarker, encodeMarker, type MarkerPayload } from '../core/marker.js';
import {
  GROUP_VOLUME, RecordType, dataCrc, decodeRecord, encodeRecord, type RecordHeader,
} from '../core/record.js';
import { SB_CLEAN, SB_DIRTY_BITMAP, SB_SUSPENDED } from '../core/superblock.js';
import { formatTime } from '../core/time.js';
import type { VolumeSpec } from '../core/volume-spec.js';
import { exists, writeFileAtomic, makeDirs } from '../io/files.js';
import { Volume } from '../volume/volume.js';
import { PvolWriter, SMALL_WRITE } from '../volume/pvol-writer.js';
import { OneMore } from '../core/one-more.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { PointDigests } from './point-digests.js';
import type { PointDigest } from '../core/volume-digest.js';
import {
  appendMarkerLog, groupPaths, readFence, readGroupConfig, readMarkerLog, writeFence, writeGroupConfig, type Fence, type MarkerEntry,
} from './group-files.js';
import { JournalVolume, READ_BATCH_BYTES, type EncodedRecord, type JournalRecord } from './journal-volume.js';
import { DirLock } from '../io/dir-lock.js';
import { RangeOrder } from './range-order.js';
import { BaseRun, type BaseScope } from './base-reader.js';

export interface CreateGroupOptions {
  volumes: VolumeSpec[];
  journalSize: number;
  /** Where the journal file goes; default GROUP_DIR/journal.jv. */
  journalPath?: string;
  /** What happens when the journal is full; default `block`. */
  journalFull?: JournalFullPolicy;
  blockTimeoutMs?: number;
  nearlyFullPercent?: number;
  /** Dirty-bitmap and base chunk size; default 1 MiB. */
  chunkSize?: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * A promoted group (`jship promote`): the group it continues (its id and
   * lineage, ending with the new epoch), the first sequence number and the
   * last timestamp of the new epoch's journal, the keys the old primary's
   * sites hold (hex lines; new ones are made when absent), and the zeroed
   * start the old group's tapes said. Its volumes must exist already.
   */
  continues?: {
    groupId: string;
    epochs: Lineage;
    firstSeq: bigint;
    lastTimestamp: bigint;
    ackKey?: string;
    linkKey?: string;
    zeroedTs?: string;
  };
}

export interface OpenGroupOptions {
  /** Wall clock in ns since the epoch (tests step it); default the system clock. */
  wallClock?: () => bigint;
  /** Monotonic clock in ns; default process.hrtime. */
  monoClock?: () => bigint;
  /**
   * How often a checkpoint runs without a FLUSH (ms, 0 = never); default
   * 5000. A checkpoint makes the journal durable, then the PVOLs, then
   * advances the applied pointer (recovery redoes only what is after it).
   */
  checkpointIntervalMs?: number;
  /**
   * A checkpoint also starts once this many bytes were journaled since the
   * last one (what recovery may have to write again); default 256 MiB.
   */
  checkpointBytes?: number;
  /**
   * With replyAfterJournal: at most this many bytes of replied writes wait
   * in memory for their PVOL write; past it a write waits for its own.
   * Default 64 MiB.
   */
  pvolLagBytes?: number;
  /**
   * A write (without FUA) resolves once it is journaled; its PVOL write
   * follows in journal order. Reads through `read` and `flush` still see
   * it. The caller must then leave the data unchanged until the next
   * flush (an NBD payload is never reused). Default false: a write
   * resolves after the PVOL write too.
   */
  replyAfterJournal?: boolean;
  /**
   * Who reads the journal and must have secured a record before it is
   * purged (DESIGN invariant 5). The process that owns the group names
   * them (src/owner/consumers.ts); without any, `purgeSecured` refuses.
   */
  consumers?: readonly JournalConsumer[];
  /** Told of every change of state (journal-full, journal-suspended, writer-blocked, …). */
  onEvent?: EventLog;
}

/**
 * A reader of the journal (the tape chain, a link secondary): the last
 * sequence number it has secured, or null while it pins nothing (a chain
 * that never wrote a tape, a detached secondary).
 */
export interface JournalConsumer {
  readonly name: string;
  secured(group: JournalGroup): Promise<bigint | null>;
}

/** What a journaled (or, while suspended, bitmap-tracked) write returns. */
export interface WriteResult {
  /** Sequence number of the (last) record of this write; while suspended, the last record before it. */
  seq: bigint;
  timestamp: bigint;
  /** False while the group is suspended: the write is only in the dirty bitmap. */
  journaled: boolean;
}

export type GroupState = 'active' | 'nearly-full' | 'full' | 'suspended' | 'resync-pending';

export interface GroupStatus {
  dir: string;
  groupId: string;
  state: GroupState;
  policy: GroupConfig['policy'];
  journal: {
    path: string;
    size: number;
    metaSlots: number;
    dataSize: number;
    /** journal-out (§0074): oldest unpurged record. */
    out: { seq: bigint; dataPos: bigint };
    /** journal-in (§0075): where the next record goes. */
    in: { seq: bigint; dataPos: bigint };
    records: bigint;
    bytes: bigint;
    usagePercent: { metadata: number; data: number };
    appliedSeq: bigint;
    /**
     * How far the PVOLs are behind the journal: records after the applied
     * pointer and their data bytes (what recovery would write again), and
     * bytes replied to whose PVOL writes are still in memory.
     */
    pvolBehind: { records: bigint; bytes: number; unwrittenBytes: number };
  };
  sequence: { first: bigint | null; last: bigint | null };
  time: { first: bigint | null; last: bigint | null };
  volumes: Array<{
    name: string;
    index: number;
    size: number;
    extents: Array<{ path: string; start: number; size: number; blockDevice: boolean }>;
    records: number;
    bytes: number;
  }>;
  dirty: { chunks: number; bytes: number; chunkSize: number } | null;
  waitingWriters: number;
  base: { baseId: bigint; scope: BaseScope } | null;
  markers: number;
  /** The group's epoch: its generation and where it began (seq 1 for generation 1). */
  epoch: { generation: number; startSeq: bigint };
  /** Set when the group learned of a newer epoch of itself (it takes no writes). */
  fenced: Fence | null;
  /** The group's clock when the status was taken (ns since the epoch). */
  now: bigint;
  /** Journal write and purge rates, and when the journal would be full at them. */
  rates: {
    oneMinute: JournalRate | null;
    fifteenMinutes: JournalRate | null;
    forecast: { oneMinute: JournalForecast; fifteenMinutes: JournalForecast };
  };
}

interface Batch {
  records: EncodedRecord[];
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface SpaceWaiter {
  count: number;
  bytes: number;
  resolve: () => void;
}

const MAX_BATCH_RECORDS = 4096;
export const DEFAULT_PVOL_LAG_BYTES = 64 * 1024 * 1024;
export const DEFAULT_CHECKPOINT_BYTES = 256 * 1024 * 1024;
const MAX_BATCH_BYTES = 64 * 1024 * 1024;

/**
 * Creates a journal group in `dir` (which must not exist or be empty): opens
 * or creates its volumes, creates and preallocates the journal, writes the
 * HMAC key for acknowledgements and group.json. On failure, removes what it
 * created and leaves existing files alone.
 */
export async function createGroup(dir: string, opts: CreateGroupOptions): Promise<GroupConfig> {
  dir = resolve(dir);
  await checkGroupCreatable(dir);
  const paths = groupPaths(dir);
  const journalPath = resolve(opts.journalPath ?? paths.journal);
  const seen = new Map<string, string>();
  for (const v of opts.volumes) {
    if (seen.has(v.name)) throw new JshipError('BAD_VOLUME_SPEC', `volume name "${v.name}" is given twice`, { hint: 'each --volume needs its own name' });
    seen.set(v.name, v.name);
  }
  const allPaths = opts.volumes.flatMap((v) => v.extents.map((e) => resolve(e.path)));
  for (const p of allPaths) {
    if (p === journalPath) throw new JshipError('BAD_VOLUME_SPEC', `${p} is named both as a volume and as the journal`, { hint: 'the journal needs a file of its own' });
    if (allPaths.indexOf(p) !== allPaths.lastIndexOf(p)) throw new JshipError('BAD_VOLUME_SPEC', `${p} is named twice among the volumes`, { hint: 'each file or device can belong to one volume only' });
  }
  if (opts.volumes.length === 0) throw new JshipError('USAGE', 'a group needs at least one volume', { hint: 'add --volume NAME=PATH[:SIZE]' });
  const created: string[] = [];
  const createdDir = !(await exists(dir));
  try {
    await makeDirs(dir);
    const volumes: GroupConfig['volumes'] = [];
    for (const spec of opts.volumes) {
      const missing = await Promise.all(spec.extents.map(async (e) => !(await exists(e.path))));
      const vol = await Volume.open({ name: spec.name, extents: spec.extents.map((e) => ({ ...e, path: resolve(e.path) })) }, { create: true });
      spec.extents.forEach((e, i) => {
        if (missing[i]) created.push(resolve(e.path));
      });
      await vol.sync();
      volumes.push({ name: vol.name, extents: vol.extents.map((e) => ({ path: e.path, size: e.size })) });
      await vol.close();
    }
    const from = opts.continues;
    const groupId = from?.groupId ?? randomUUID();
    await JournalVolume.create(journalPath, opts.journalSize, groupId, opts.onProgress, from ? { seq: from.firstSeq, lastTimestamp: from.lastTimestamp } : undefined);
    created.push(journalPath);
    await writeFileAtomic(paths.ackKey, from?.ackKey ?? `${randomBytes(32).toString('hex')}\n`, 0o600);
    await writeFileAtomic(paths.linkKey, from?.linkKey ?? `${randomBytes(32).toString('hex')}\n`, 0o600);
    const config: GroupConfig = {
      format: 1,
      groupId,
      createdAt: new Date().toISOString(),
      volumes,
      journal: { path: journalPath, size: opts.journalSize },
      policy: {
        journalFull: opts.journalFull ?? DEFAULT_POLICY.journalFull,
        blockTimeoutMs: opts.blockTimeoutMs ?? DEFAULT_POLICY.blockTimeoutMs,
        nearlyFullPercent: opts.nearlyFullPercent ?? DEFAULT_POLICY.nearlyFullPercent,
      },
      chunkSize: opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      // Every volume file made here, zero-filled: the state before the first record is known.
      ...(!from && allPaths.every((p) => created.includes(p)) ? { zeroedTs: systemWallClock()().toString() } : {}),
      ...(from?.zeroedTs !== undefined ? { zeroedTs: from.zeroedTs } : {}),
      ...(from ? { epochs: from.epochs } : {}),
    };
    await writeGroupConfig(dir, config);
    return config;
  } catch (e) {
    for (const p of created) await fsp.rm(p, { force: true });
    await fsp.rm(paths.ackKey, { force: true });
    await fsp.rm(paths.linkKey, { force: true });
    if (createdDir) await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** A group demoted to a secondary (`jship demote`) is not opened: its volumes are a replica's SVOLs now. */
async function refuseDemoted(dir: string): Promise<void> {
  const path = groupPaths(dir).demoted;
  const text = await fsp.readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  let replica = '?';
  try {
    replica = String((JSON.parse(text) as { replica?: unknown }).replica);
  } catch {
    // the refusal stands; the file names no replica
  }
  throw new JshipError('GROUP_DEMOTED', `${dir} was demoted: its volumes are the SVOLs of replica ${replica}, which follows the group's primary now`, {
    hint: `serve the group again by promoting that replica (jship promote ${replica} --to NEW_GROUP_DIR); this directory keeps the old epoch's journal, see ${path}`,
  });
}

/** Refuses a directory a new group may not be created in: anything but a missing or empty one. */
export async function checkGroupCreatable(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new JshipError('GROUP_EXISTS', `${dir} is a file, not a directory`, { hint: 'name a new directory for the group' });
    throw e;
  }
  if (entries.length > 0) {
    throw new JshipError('GROUP_EXISTS', `${dir} is not empty${entries.includes('group.json') ? ': it holds a group already' : ''}`, {
      hint: 'name a new or empty directory; nothing was changed',
    });
  }
}

/**
 * A journal group opened for writing: the consistency group of patent §0030
 * and the primary side of §0037-0049. One sequence and one clock for all its
 * volumes; every write is in the journal before it reaches the PVOL and
 * before its promise resolves.
 */
export class JournalGroup {
  readonly dir: string;
  readonly config: GroupConfig;
  readonly volumes: readonly Volume[];
  readonly journal: JournalVolume;
  readonly #lock: DirLock;
  readonly #clock: MonotonicClock;
  readonly #order = new RangeOrder();
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #batches: Batch[] = [];
  #writing = false;
  #inWrite: Batch | undefined;
  readonly #waiters: SpaceWaiter[] = [];
  #closing = false;
  #suspending: Promise<void> | undefined;
  readonly #pvolWriter = new PvolWriter();
  #replyAfterJournal = false;
  /** Bytes replied to (replyAfterJournal) whose PVOL writes are not done yet. */
  #pvolBehind = 0;
  #pvolLag = DEFAULT_PVOL_LAG_BYTES;
  /** Data bytes journaled since the last checkpoint's target: what recovery would write again. */
  #sinceCheckpoint = 0;
  #checkpointBytes = DEFAULT_CHECKPOINT_BYTES;
  readonly #checkpoints = new OneMore(() => this.#doCheckpoint());
  /** The journal write of the last record given out (batches are written in order). */
  #lastJournaled: Promise<void> = Promise.resolve();
  /** A write went to a PVOL without a record (suspended) since the last flush began: that flush syncs the PVOLs and bitmaps. */
  #pvolOnly = false;
  readonly #markerNames: Set<string>;
  readonly #perVolume: Array<{ records: number; bytes: number }>;
  #bitmap: DirtyBitmap | undefined;
  /** The volumes' chunk hashes, for the digest at each restore point and base completion. */
  #digests!: PointDigests;
  #suspended = false;
  /** Suspensions since the group was opened: a full base heals the bitmap only if none began while it ran. */
  #suspensions = 0;
  readonly #flushes = new OneMore(() => this.#doFlush());
  #dirtySinceFlush = false;
  #failed: Error | undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #base: BaseRun | undefined;
  #consumers: readonly JournalConsumer[] | undefined;
  #mono: () => bigint = systemMonoNs;
  #onEvent: EventLog | undefined;
  #lastState: GroupState = 'active';
  #rates: RateWindow | undefined;
  #purging: Promise<unknown> = Promise.resolve();
  #fence: Fence | null = null;
  /** A promoted group: every chunk written in its epoch (what an old primary that is demoted must get again). */
  #epochDirty: DirtyBitmap | undefined;
  /** Chunks marked on disk (a suspended write) since the last flush: the flush syncs the epoch bitmap too. */
  #epochMarked = false;

  private constructor(dir: string, config: GroupConfig, volumes: Volume[], journal: JournalVolume, lock: DirLock, clock: MonotonicClock, markerNames: Set<string>, perVolume: Array<{ records: number; bytes: number }>) {
    this.dir = dir;
    this.config = config;
    this.volumes = volumes;
    this.journal = journal;
    this.#lock = lock;
    this.#clock = clock;
    this.#markerNames = markerNames;
    this.#perVolume = perVolume;
  }

  /**
   * Opens a group for writing: takes the directory lock, opens the journal
   * and the volumes, recovers after a crash (finds the end of the log and
   * re-applies to the PVOLs every record not known to be on them).
   */
  static async open(dir: string, opts: OpenGroupOptions = {}): Promise<JournalGroup> {
    dir = resolve(dir);
    const config = await readGroupConfig(dir);
    const paths = groupPaths(dir);
    const lock = await DirLock.acquire(paths.lock, `group ${dir}`);
    const volumes: Volume[] = [];
    let journal: JournalVolume | undefined;
    let epochDirty: DirtyBitmap | undefined;
    try {
      await refuseDemoted(dir);
      journal = await JournalVolume.open(config.journal.path, config.groupId);
      for (const v of config.volumes) volumes.push(await Volume.open(v));
      const perVolume = config.volumes.map(() => ({ records: 0, bytes: 0 }));
      const markerSeqs: bigint[] = [];
      let lastTs = journal.lastTimestamp;
      // Persisted before each purge: what the journal still holds is marked again from its records.
      epochDirty = config.epochs && config.epochs.length > 0 ? await DirtyBitmap.open(paths.epochBitmap, config.chunkSize, volumes.map((v) => v.size)) : undefined;
      await journal.recover((h) => {
        if (h.timestamp > lastTs) lastTs = h.timestamp;
        if (h.type === RecordType.Marker) {
          markerSeqs.push(h.seq);
          return;
        }
        epochDirty?.setRange(h.volume, h.offset, h.length);
        const pv = perVolume[h.volume];
        if (!pv) throw new JshipError('JOURNAL_CORRUPT', `journal ${journal?.path}: record ${h.seq} names volume ${h.volume}, the group has ${config.volumes.length}`, { hint: 'the journal does not belong to this group config' });
        pv.records++;
        pv.bytes += h.type === RecordType.Update ? h.length : 0;
      });
      // Redo: every record after the last durable "applied" point goes to the PVOLs again (idempotent, in order).
      const applied = journal.appliedSeq;
      const end = journal.writtenSeq;
      const redoFrom = applied + 1n > journal.outSeq ? applied + 1n : journal.outSeq;
      for (let seq = redoFrom; seq < end;) {
        const recs = await journal.readRecords(seq, 256);
        for (const r of recs) await applyToVolume(volumes, r.header, r.data);
        seq += BigInt(recs.length);
      }
      await Promise.all(volumes.map((v) => v.sync()));
      const names = new Set<string>();
      const log = await readMarkerLog(dir);
      for (const m of log) names.add(m.name);
      const missing: MarkerEntry[] = [];
      for (const seq of markerSeqs) {
        const [r] = await journal.readRecords(seq, 1);
        if (!r) continue;
        const p = decodeMarker(r.data, `journal record ${seq}`);
        if (p.kind === 'restore-point' && !names.has(p.name)) {
          names.add(p.name);
          missing.push({ name: p.name, seq: String(seq), timestamp: String(r.header.timestamp) });
        }
      }
      if (missing.length > 0) await writeFileAtomic(paths.markers, [...log, ...missing].map((m) => `${JSON.stringify(m)}\n`).join(''));
      const sbFlags = journal.superblock.flags & ~SB_CLEAN;
      await journal.writeSuperblock({ headSeq: end, headDataPos: journal.writtenPos, appliedSeq: end - 1n, lastTimestamp: lastTs, flags: sbFlags }, true);
      const clock = new MonotonicClock(lastTs, opts.wallClock ?? systemWallClock(), opts.monoClock ?? systemMonoNs);
      const group = new JournalGroup(dir, config, volumes, journal, lock, clock, names, perVolume);
      if (sbFlags & SB_DIRTY_BITMAP) {
        group.#bitmap = await group.#openBitmap();
        group.#suspended = (sbFlags & SB_SUSPENDED) !== 0;
      }
      group.#fence = await readFence(dir);
      group.#epochDirty = epochDirty;
      group.#digests = await PointDigests.open(dir, volumes, config.chunkSize, end - 1n, group.#order);
      group.#replyAfterJournal = opts.replyAfterJournal ?? false;
      group.#pvolLag = opts.pvolLagBytes ?? DEFAULT_PVOL_LAG_BYTES;
      group.#checkpointBytes = opts.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
      group.#consumers = opts.consumers;
      group.#onEvent = opts.onEvent;
      group.#lastState = group.state;
      group.#mono = opts.monoClock ?? systemMonoNs;
      group.#rates = new RateWindow(group.#mono(), group.#counters());
      const interval = opts.checkpointIntervalMs ?? 5000;
      if (interval > 0) {
        group.#timer = setInterval(() => {
          if ((group.#dirtySinceFlush || group.#sinceCheckpoint > 0 || group.journal.appliedSeq < group.journal.writtenSeq - 1n) && !group.#closed && !group.#failed) {
            group.checkpoint().catch(() => undefined);
          }
        }, interval);
        group.#timer.unref();
      }
      return group;
    } catch (e) {
      await journal?.close();
      await epochDirty?.close();
      await Promise.all(volumes.map((v) => v.close()));
      await lock.release();
      throw e;
    }
  }

  // ---- writes ---------------------------------------------------------------

  /**
   * Writes `data` at `offset` of a volume: journaled (sequence number and
   * timestamp) before the PVOL is written and before the promise resolves.
   * Do not change `data` until then. With `fua`, journal and PVOL are durable
   * when it resolves.
   */
  async write(volume: string | number, offset: number, data: Uint8Array, opts: { fua?: boolean } = {}): Promise<WriteResult> {
    return this.#submit(RecordType.Update, volume, offset, data.length, data, opts.fua ?? false);
  }

  /**
   * Journals a change that is already on the PVOL (made outside jship, found
   * by a scan): an update record, no PVOL write.
   */
  async journalChange(volume: string | number, offset: number, data: Uint8Array): Promise<WriteResult> {
    return this.#submit(RecordType.Update, volume, offset, data.length, data, false, false);
  }

  /** Writes zeroes over a range: a record without data. */
  async writeZeroes(volume: string | number, offset: number, length: number, opts: { fua?: boolean } = {}): Promise<WriteResult> {
    return this.#submit(RecordType.Zero, volume, offset, length, undefined, opts.fua ?? false);
  }

  /** Discards a range: journaled without data; the range reads back as zeroes. */
  async trim(volume: string | number, offset: number, length: number, opts: { fua?: boolean } = {}): Promise<WriteResult> {
    return this.#submit(RecordType.Trim, volume, offset, length, undefined, opts.fua ?? false);
  }

  /**
   * Reads from a PVOL: every write whose promise has resolved is seen (a
   * read waits for PVOL writes of overlapping ranges submitted before it).
   */
  async read(volume: string | number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.#checkUsable();
    const volIdx = this.volumeIndex(volume);
    const vol = this.volumes[volIdx] as Volume;
    vol.checkRange(offset, length);
    const op = this.#order.register(volIdx, offset, length);
    try {
      await op.ready;
      return await vol.read(offset, length, into);
    } finally {
      op.finish();
    }
  }

  /**
   * Makes every write whose promise has resolved (and every one submitted
   * before this call) durable through the journal: it is fdatasynced, and
   * recovery re-applies to the PVOLs whatever is after the applied pointer.
   * The PVOL writes of those records are done (in the page cache) when it
   * resolves; the PVOLs themselves are made durable by `checkpoint`. Writes
   * made while the group is suspended have no record: a flush covering one
   * fdatasyncs the PVOLs and the bitmaps too.
   */
  async flush(): Promise<void> {
    this.#checkUsable();
    // A flush already running may have started before our writes: one more runs after it.
    return this.#flushes.run();
  }

  async #doFlush(): Promise<void> {
    const run = (async () => {
      this.#dirtySinceFlush = false;
      // Taken in the same tick: every write submitted before this flush is in `pending`, and flagged.
      const pvolOnly = this.#pvolOnly;
      const epochMarked = this.#epochMarked;
      this.#pvolOnly = false;
      this.#epochMarked = false;
      // Writes that went to the PVOL only (suspended) are durable through it: their PVOL writes are waited for.
      const pending = pvolOnly ? [...this.#inflight] : [];
      await this.#lastJournaled.catch(() => undefined);
      this.#checkUsable();
      const headSeq = this.journal.writtenSeq;
      const headDataPos = this.journal.writtenPos;
      // The journal's fdatasync is the durability point: the PVOL writes of journaled records go on behind it
      // (reads wait for them by range order, checkpoints before their PVOL fdatasync, recovery redoes them).
      await Promise.all([this.journal.sync(), Promise.allSettled(pending)]);
      this.#checkUsable();
      await Promise.all([
        ...(pvolOnly ? this.volumes.map((v) => v.sync()) : []),
        this.#bitmap?.sync(),
        epochMarked ? this.#epochDirty?.sync() : undefined,
      ]);
      // Made durable by the next sync; until then the previous copy stands.
      await this.journal.writeSuperblock({ headSeq, headDataPos, lastTimestamp: this.#clock.last }, false);
    })();
    try {
      await run;
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  /**
   * A checkpoint: flushes (the journal is durable up to now), waits for the
   * PVOL writes of its records, fdatasyncs the PVOLs, and only then
   * advances the applied pointer, so recovery redoes only what came after.
   * Runs by interval and by bytes journaled (OpenGroupOptions), before a
   * purge and at close. One at a time; a call while one runs queues one more.
   */
  async checkpoint(): Promise<void> {
    this.#checkUsable();
    return this.#checkpoints.run();
  }

  async #doCheckpoint(): Promise<void> {
    const run = (async () => {
      // Every record up to `target` has its PVOL write among these (numbered and tracked in the same tick).
      const target = this.journal.allocSeq - 1n;
      const applying = [...this.#inflight];
      const bytes = this.#sinceCheckpoint;
      await this.flush();
      await Promise.allSettled(applying);
      this.#checkUsable();
      await Promise.all(this.volumes.map((v) => v.sync()));
      // Made durable by the next journal sync (a flush, a purge, close): until then recovery redoes a little more.
      if (target > this.journal.appliedSeq) await this.journal.writeSuperblock({ appliedSeq: target }, false);
      this.#sinceCheckpoint -= bytes;
    })();
    try {
      await run;
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  async #submit(type: RecordType, volume: string | number, offset: number, length: number, data: Uint8Array | undefined, fua: boolean, toPvol = true): Promise<WriteResult> {
    this.#checkWritable();
    const volIdx = this.volumeIndex(volume);
    const vol = this.volumes[volIdx] as Volume;
    vol.checkRange(offset, length);
    if (length === 0) return { seq: this.journal.allocSeq - 1n, timestamp: this.#clock.last, journaled: true };
    const max = this.journal.maxRecordData;
    const pieces = type === RecordType.Update ? Math.ceil(length / max) : 1;
    const bytes = type === RecordType.Update ? length : 0;
    if (bytes > this.journal.layout.dataSize / 2) {
      throw new JshipError('RECORD_TOO_LARGE', `a write of ${length} bytes is larger than half the journal's data area (${this.journal.layout.dataSize} bytes)`, {
        hint: 'write in smaller pieces, or re-create the group with a larger --journal-size',
      });
    }
    if (this.#suspended && !(await this.#tryResume())) return this.#suspendedWrite(type, volIdx, offset, length, data, fua);
    if (this.#waiters.length > 0 || !this.journal.fits(pieces, bytes, false)) {
      if (this.config.policy.journalFull === 'suspend') {
        await this.#suspend(`journal full (${this.#usageText()})`);
        return this.#suspendedWrite(type, volIdx, offset, length, data, fua);
      }
      await this.#waitForSpace(pieces, bytes);
      this.#checkUsable();
    }
    // From here to the end of the loop nothing awaits: numbers, journal order and PVOL order are taken together.
    const applied: Promise<void>[] = [];
    const journaled: Promise<void>[] = [];
    let last: { seq: bigint; timestamp: bigint } = { seq: 0n, timestamp: 0n };
    for (let done = 0, i = 0; i < pieces; i++) {
      const len = type === RecordType.Update ? Math.min(max, length - done) : length;
      const piece = data?.subarray(done, done + len);
      const rec = this.#allocRecord(type, volIdx, offset + done, len, piece);
      const op = this.#order.register(volIdx, offset + done, len);
      const off = offset + done;
      applied.push(this.#track((async () => {
        try {
          try {
            await rec.journaled;
          } catch (e) {
            // Not journaled: the write fails, and nothing of it is anywhere.
            this.#fail(e);
            throw e;
          }
          await op.ready;
          if (!toPvol) return;
          try {
            if (piece) await (piece.length <= SMALL_WRITE ? vol.writeBatched(this.#pvolWriter, off, piece) : vol.write(off, piece));
            else await vol.writeZeroes(off, len);
          } catch (e) {
            // Journaled: the write stands (recovery applies it to the PVOL), so it is not reported as failed.
            // The journal is made durable, and the group takes no more writes until it is reopened.
            await this.#pvolFailed(volIdx, e);
          }
        } finally {
          op.finish();
        }
      })()));
      journaled.push(rec.journaled);
      last = rec;
      done += len;
    }
    this.#dirtySinceFlush = true;
    if (toPvol) {
      this.#sinceCheckpoint += bytes;
      if (this.#sinceCheckpoint >= this.#checkpointBytes && !this.#checkpoints.busy) this.checkpoint().catch(() => undefined);
    }
    if (this.#replyAfterJournal && !fua && this.#pvolBehind < this.#pvolLag) {
      // The PVOL write goes on behind: reads wait for it (range order), checkpoints wait for it, recovery redoes it.
      // Its data stays in memory until then, so the bytes behind are bounded: past the bound, writes wait as before.
      this.#pvolBehind += length;
      const all = Promise.all(applied);
      all.then(() => { this.#pvolBehind -= length; }, () => { this.#pvolBehind -= length; });
      await Promise.all(journaled);
    } else {
      await Promise.all(applied);
    }
    // After a PVOL failure the journal was synced already: the write is durable through it.
    if (fua && !this.#failed) await this.flush();
    return { seq: last.seq, timestamp: last.timestamp, journaled: true };
  }

  /** A PVOL write failed after its record was journaled: keep the record durable, stop taking writes, say why. */
  async #pvolFailed(volIdx: number, e: unknown): Promise<void> {
    const why = e instanceof Error ? e.message : String(e);
    const failure = new Error(`writing PVOL "${this.volumes[volIdx]?.name}" failed (${why}); the writes before this one and this one are in the journal`);
    this.#fail(failure);
    await this.journal.sync().catch(() => undefined);
  }

  /** Gives a record its sequence number, timestamp and journal place, and queues it. Synchronous. */
  #allocRecord(type: RecordType, volume: number, offset: number, length: number, data: Uint8Array | undefined, stamp?: bigint): { seq: bigint; timestamp: bigint; journaled: Promise<void> } {
    let timestamp: bigint;
    if (stamp !== undefined) {
      timestamp = stamp;
    } else {
      const next = this.#clock.next();
      timestamp = next.timestamp;
      if (next.step) {
        // The step is journaled first, with the stamp it was noticed at.
        const marker = encodeMarker(clockStepMarker(next.step));
        this.#allocRecord(RecordType.Marker, GROUP_VOLUME, 0, marker.length, marker, timestamp);
        timestamp = this.#clock.next().timestamp;
      }
    }
    const { seq, dataPos } = this.journal.allocate(data?.length ?? 0);
    if (volume !== GROUP_VOLUME && type !== RecordType.Marker) {
      this.#digests.beforeWrite(volume, offset, length);
      this.#epochDirty?.setRange(volume, offset, length);
    }
    // Per record: a clock read; the counters only when a sample is due (every 5 s).
    const now = this.#mono();
    if (this.#rates?.due(now)) this.#rates.note(now, this.#counters());
    this.#noteState();
    const header = encodeRecord({
      type, flags: 0, volume, seq, timestamp, offset, length, dataPos, aux: 0n, dataCrc: data ? dataCrc(data) : 0,
    });
    if (volume !== GROUP_VOLUME) {
      const pv = this.#perVolume[volume] as { records: number; bytes: number };
      pv.records++;
      pv.bytes += type === RecordType.Update ? length : 0;
    }
    const journaled = this.#enqueue({ seq, dataPos, header, data });
    this.#lastJournaled = journaled;
    return { seq, timestamp, journaled };
  }

  /**
   * Journals a marker (waiting for space under the `block` policy; the
   * marker reserve is used only by markers the group writes itself).
   */
  async appendMarker(payload: MarkerPayload, useReserve = false): Promise<{ seq: bigint; timestamp: bigint }> {
    this.#checkUsable();
    const data = encodeMarker(payload);
    if (!useReserve && (this.#waiters.length > 0 || !this.journal.fits(1, data.length, false))) await this.#waitForSpace(1, data.length);
    if (!this.journal.fits(1, data.length, true)) {
      throw new JshipError('JOURNAL_FULL', `no journal space left for a "${payload.kind}" marker`, { hint: 'export and purge the journal first' });
    }
    const rec = this.#allocRecord(RecordType.Marker, GROUP_VOLUME, 0, data.length, data);
    // A point's digest: the chunks it reads are taken in the tick its sequence number was given out;
    // they are read in the background (an export of the marker waits for it, not the mark).
    if (payload.kind === 'restore-point' || payload.kind === 'base-complete') {
      this.#digests.begin(rec.seq, payload.kind, payload.kind === 'restore-point' ? payload.name : undefined).catch((e: unknown) => {
        this.#onEvent?.({ event: 'digest-failed', seq: rec.seq, error: e instanceof Error ? e.message : String(e) });
      });
    }
    this.#dirtySinceFlush = true;
    await this.#track(rec.journaled);
    return { seq: rec.seq, timestamp: rec.timestamp };
  }

  /**
   * The digests of the points (restore points, base completions) whose
   * markers lie in [first, last]: what a tape holding those records carries
   * in its trailer. Waits for digests still being computed.
   */
  digestsBetween(first: bigint, last: bigint): Promise<PointDigest[]> {
    return this.#digests.between(first, last);
  }

  /**
   * Journals a named restore point (a marker record, §0159-0160). Names are
   * unique within the group, also after their records are purged. Durable
   * when it resolves.
   */
  async mark(name: string): Promise<{ seq: bigint; timestamp: bigint }> {
    this.#checkWritable();
    checkMarkerName(name);
    if (this.#markerNames.has(name)) {
      throw new JshipError('MARKER_EXISTS', `a restore point named "${name}" exists already in this group`, {
        hint: 'marker names are unique within a group: choose another name (add a date, say)',
      });
    }
    if (this.#suspended || this.#bitmap) {
      throw new JshipError('JOURNAL_SUSPENDED', `no restore point can be taken: the group is ${this.#suspended ? 'suspended' : 'waiting for a resync base'}`, {
        hint: 'purge the journal (export it) and take a resync base (jship export --base) first',
      });
    }
    this.#markerNames.add(name);
    try {
      const r = await this.appendMarker({ kind: 'restore-point', name });
      await this.flush();
      await appendMarkerLog(this.dir, { name, seq: String(r.seq), timestamp: String(r.timestamp) });
      return r;
    } catch (e) {
      this.#markerNames.delete(name);
      throw e;
    }
  }

  // ---- journal space ---------------------------------------------------------

  /**
   * Frees journal records up to `upto` (inclusive): journal-out moves past
   * them (§0074, §0082). Only records that are durable on the PVOLs are
   * purged, so a crash can always redo what is left. Returns the new journal-out.
   */
  async purge(upto: bigint): Promise<bigint> {
    this.#checkUsable();
    if (upto >= this.journal.allocSeq) {
      throw new JshipError('USAGE', `cannot purge up to ${upto}: the last record is ${this.journal.allocSeq - 1n}`, { hint: 'purge only what was exported' });
    }
    if (upto < this.journal.outSeq) return this.journal.outSeq;
    // Never past the applied pointer: what is purged must be durable on the PVOLs.
    await this.checkpoint();
    const limit = this.journal.appliedSeq < upto ? this.journal.appliedSeq : upto;
    // The epoch's written chunks are durable before the records that show them go.
    await this.#epochDirty?.persist();
    await this.#epochDirty?.sync();
    await this.journal.purge(limit, (h) => {
      const pv = this.#perVolume[h.volume];
      if (!pv) return;
      pv.records--;
      pv.bytes -= h.type === RecordType.Update ? h.length : 0;
    });
    this.#wakeWaiters();
    // An idle suspended group resumes as soon as space is back, not only at the next client write.
    if (this.#suspended) await this.#tryResume();
    this.#noteState();
    return this.journal.outSeq;
  }

  /**
   * Purges the journal up to the smallest position every consumer has
   * secured (consumers that pin nothing yet are left out; when none pins,
   * nothing is purged). One purge at a time, whoever asks: an export, an
   * acknowledgement, a link session, a forgotten secondary. Returns
   * journal-out after it.
   */
  purgeSecured(): Promise<bigint> {
    const consumers = this.#consumers;
    if (!consumers) {
      return Promise.reject(new Error(`group ${this.dir} was opened without its journal consumers: open it through the owner (src/owner/consumers.ts) to purge`));
    }
    const run = this.#purging.then(async () => {
      let limit: bigint | null = null;
      for (const c of consumers) {
        const seq = await c.secured(this);
        if (seq !== null && (limit === null || seq < limit)) limit = seq;
      }
      const last = this.journal.writtenSeq - 1n;
      if (limit === null) return this.journal.outSeq;
      const to = limit < last ? limit : last;
      return to >= this.journal.outSeq ? this.purge(to) : this.journal.outSeq;
    });
    this.#purging = run.catch(() => undefined);
    return run;
  }

  /** The header of a record still in the journal and on disk (journal-out ≤ seq < written), else null. */
  async header(seq: bigint): Promise<RecordHeader | null> {
    const j = this.journal;
    if (seq < j.outSeq || seq >= j.writtenSeq) return null;
    return decodeRecord(await j.readHeaders(seq, 1), 0, `journal record ${seq}`);
  }

  /**
   * Tells of a change of state, once: journal-nearly-full, journal-full,
   * journal-suspended, journal-resumed (suspended → resync-pending),
   * journal-resync-complete, journal-active.
   */
  #noteState(why?: string): void {
    const now = this.state;
    const was = this.#lastState;
    if (now === was) return;
    this.#lastState = now;
    const event = was === 'suspended' && now === 'resync-pending' ? 'journal-resumed'
      : was === 'resync-pending' && now !== 'suspended' ? 'journal-resync-complete'
        : `journal-${now}`;
    this.#onEvent?.({ event, from: was, state: now, usage: this.#usageText(), ...(why ? { why } : {}) });
  }

  /** Journal positions only grow: their differences are what was written and purged. */
  #counters(): JournalCounters {
    const j = this.journal;
    return { records: j.allocSeq, bytes: j.allocPos, purgedRecords: j.outSeq, purgedBytes: j.outDataPos };
  }

  async #waitForSpace(count: number, bytes: number): Promise<void> {
    const deadline = Date.now() + this.config.policy.blockTimeoutMs;
    let front = false;
    while (front ? !this.journal.fits(count, bytes, false) : this.#waiters.length > 0 || !this.journal.fits(count, bytes, false)) {
      if (this.#closing) {
        throw new JshipError('GROUP_CLOSED', `group ${this.dir} is closing: a write waiting for journal space was not journaled`, { hint: 'write it again once the group is open again' });
      }
      const left = deadline - Date.now();
      const waited = await new Promise<boolean>((resolveWait) => {
        const w: SpaceWaiter = {
          count,
          bytes,
          resolve: () => {
            clearTimeout(timer);
            resolveWait(true);
          },
        };
        if (front) this.#waiters.unshift(w);
        else this.#waiters.push(w);
        this.#noteState();
        if (!front) this.#onEvent?.({ event: 'writer-blocked', records: count, bytes, waiting: this.#waiters.length, usage: this.#usageText(), timeoutMs: this.config.policy.blockTimeoutMs });
        const timer = setTimeout(() => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) {
            this.#waiters.splice(i, 1);
            resolveWait(false);
          }
        }, Math.max(0, left));
      });
      if (!waited) {
        this.#wakeWaiters();
        this.#onEvent?.({ event: 'writer-failed', error: 'JOURNAL_FULL', usage: this.#usageText(), waitedMs: this.config.policy.blockTimeoutMs });
        this.#noteState();
        throw new JshipError('JOURNAL_FULL', `the journal is full (${this.#usageText()}) and no space was freed within ${this.config.policy.blockTimeoutMs} ms`, {
          hint: 'export the journal so that it can be purged (jship export), or re-create the group with a larger --journal-size',
        });
      }
      this.#checkUsable();
      front = true;
    }
  }

  #wakeWaiters(): void {
    let count = 0;
    let bytes = 0;
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0] as SpaceWaiter;
      if (!this.journal.fits(count + w.count, bytes + w.bytes, false)) break;
      count += w.count;
      bytes += w.bytes;
      this.#waiters.shift();
      w.resolve();
    }
  }

  // ---- suspend policy ----------------------------------------------------------

  async #openBitmap(): Promise<DirtyBitmap> {
    return DirtyBitmap.open(groupPaths(this.dir).bitmap, this.config.chunkSize, this.volumes.map((v) => v.size));
  }

  async #suspend(reason: string): Promise<void> {
    if (this.#suspended) return;
    // Concurrent writers that find the journal full wait for the same suspension: none may
    // take the bitmap path before the bitmap is open.
    this.#suspending ??= (async () => {
      this.#bitmap ??= await this.#openBitmap();
      await this.journal.writeSuperblock({ flags: (this.journal.superblock.flags & ~SB_CLEAN) | SB_SUSPENDED | SB_DIRTY_BITMAP }, true);
      this.#suspended = true;
      this.#suspensions++;
      this.#noteState(reason);
      await this.appendMarker({ kind: 'suspended', reason }, true);
    })().finally(() => {
      this.#suspending = undefined;
    });
    return this.#suspending;
  }

  /** Journaling resumes once the journal is below half the nearly-full threshold. */
  async #tryResume(): Promise<boolean> {
    const u = this.journal.usage();
    const percent = Math.max(u.metaFraction, u.dataFraction) * 100;
    if (percent >= this.config.policy.nearlyFullPercent / 2) return false;
    this.#suspended = false;
    const bitmap = this.#bitmap as DirtyBitmap;
    await this.journal.writeSuperblock({ flags: this.journal.superblock.flags & ~SB_SUSPENDED }, true);
    await this.appendMarker({ kind: 'resumed', dirtyBytes: bitmap.dirtyCount() * bitmap.chunkSize }, true);
    this.#noteState(`${bitmap.dirtyCount() * bitmap.chunkSize} bytes to resync`);
    return true;
  }

  async #suspendedWrite(type: RecordType, volIdx: number, offset: number, length: number, data: Uint8Array | undefined, fua: boolean): Promise<WriteResult> {
    const vol = this.volumes[volIdx] as Volume;
    const bitmap = this.#bitmap as DirtyBitmap;
    this.#digests.beforeWrite(volIdx, offset, length);
    const op = this.#order.register(volIdx, offset, length);
    this.#dirtySinceFlush = true;
    // No record will show this write: the next flush syncs the PVOLs and the bitmaps for it.
    this.#pvolOnly = true;
    if (this.#epochDirty) this.#epochMarked = true;
    await this.#track((async () => {
      try {
        await op.ready;
        await bitmap.mark(volIdx, offset, length);
        // The epoch's written chunks are marked on disk too (synced with the bitmap at flush).
        await this.#epochDirty?.mark(volIdx, offset, length);
        if (type === RecordType.Update && data) await vol.write(offset, data);
        else await vol.writeZeroes(offset, length);
      } catch (e) {
        this.#fail(e);
        throw e;
      } finally {
        op.finish();
      }
    })());
    if (fua) await this.flush();
    return { seq: this.journal.allocSeq - 1n, timestamp: this.#clock.peek(), journaled: false };
  }

  // ---- base ------------------------------------------------------------------

  /**
   * Starts a base journal (§0154-0158): journals a "base started" marker
   * whose sequence number becomes the base id, and returns a BaseRun that
   * reads the volumes chunk by chunk while writes go on. `resync` reads only
   * the chunks of the dirty bitmap.
   */
  async beginBase(opts: { scope?: BaseScope; volumes?: string[]; chunks?: ReadonlyArray<readonly number[]>; for?: string } = {}): Promise<BaseRun> {
    this.#checkUsable();
    if (this.#base) {
      throw new JshipError('BASE_IN_PROGRESS', `base ${this.#base.baseId} is still being taken`, { hint: 'wait for it to complete, or abort it' });
    }
    const scope = opts.scope ?? (this.#bitmap ? 'resync' : 'full');
    if (this.#suspended && !(await this.#tryResume())) {
      throw new JshipError('JOURNAL_SUSPENDED', 'the group is suspended and its journal is still nearly full', {
        hint: 'export and purge the journal first; the resync base needs journal space for its markers',
      });
    }
    if (scope === 'resync' && !this.#bitmap && !opts.chunks) {
      throw new JshipError('USAGE', 'a resync base needs a dirty bitmap; this group was never suspended', { hint: 'take a full base' });
    }
    const names = opts.volumes ?? this.config.volumes.map((v) => v.name);
    const indexes = names.map((n) => this.volumeIndex(n));
    const started = await this.appendMarker({ kind: 'base-started', scope, volumes: names, ...(opts.for !== undefined ? { for: opts.for } : {}) });
    const run = new BaseRun(this.#baseHooks(this.#suspensions), started.seq, scope, indexes, this.config.chunkSize, opts.chunks);
    this.#base = run;
    return run;
  }

  #baseHooks(suspensionsAtStart: number): ConstructorParameters<typeof BaseRun>[0] {
    return {
      volumes: this.volumes,
      bitmap: () => this.#bitmap,
      order: this.#order,
      position: () => this.journal.allocSeq - 1n,
      now: () => this.#clock.peek(),
      track: (p) => this.#track(p),
      check: () => this.#checkUsable(),
      mark: (p) => this.appendMarker(p, p.kind !== 'base-started'),
      finished: async (run, ok) => {
        if (this.#base === run) this.#base = undefined;
        // A full base of every volume, with no suspension while it ran, holds every dirty region too.
        const healsAll = run.scope === 'full' && run.volumes.length === this.volumes.length && this.#suspensions === suspensionsAtStart;
        if (ok && ((run.scope === 'resync' && !run.listed) || healsAll) && this.#bitmap) {
          await this.#bitmap.persist();
          await this.#bitmap.sync();
          if ((healsAll || this.#bitmap.dirtyCount() === 0) && !this.#suspended) {
            await this.journal.writeSuperblock({ flags: this.journal.superblock.flags & ~SB_DIRTY_BITMAP }, true);
            await this.#bitmap.close();
            this.#bitmap = undefined;
            await fsp.rm(groupPaths(this.dir).bitmap, { force: true });
            this.#noteState(`${run.scope} base ${run.baseId} complete`);
          }
        }
        await this.flush();
      },
    };
  }

  // ---- reading ---------------------------------------------------------------

  /**
   * The journal's records from `from` (default: journal-out) up to the last
   * one written, verified, in sequence order. Throws JOURNAL_PURGED when
   * `from` is already purged. With `reuse`, the data is read into two
   * buffers used in turn: a record's data is valid only until the loop asks
   * for the record after the last of its batch — the caller copies what it
   * keeps (the tape writer does) and no fresh memory is taken per batch.
   */
  async *records(from?: bigint, opts: { batch?: number; reuse?: boolean } = {}): AsyncGenerator<JournalRecord> {
    let seq = from ?? this.journal.outSeq;
    const batch = opts.batch ?? 256;
    const buffers = opts.reuse ? [Buffer.allocUnsafeSlow(READ_BATCH_BYTES), Buffer.allocUnsafeSlow(READ_BATCH_BYTES)] : [];
    let turn = 0;
    const read = (): Promise<JournalRecord[]> => this.journal.readRecords(seq, batch, READ_BATCH_BYTES, buffers[turn++ % 2]);
    // The next batch is read while the caller works on this one (into the other buffer).
    let next = read();
    for (;;) {
      this.#checkUsable();
      const recs = await next;
      if (recs.length === 0) return;
      seq += BigInt(recs.length);
      next = read();
      next.catch(() => undefined);
      for (const r of recs) yield r;
    }
  }

  // ---- status ----------------------------------------------------------------

  volumeIndex(volume: string | number): number {
    if (typeof volume === 'number') {
      if (Number.isInteger(volume) && volume >= 0 && volume < this.volumes.length) return volume;
    } else {
      const i = this.volumes.findIndex((v) => v.name === volume);
      if (i >= 0) return i;
    }
    throw new JshipError('VOLUME_UNKNOWN', `group has no volume ${JSON.stringify(volume)}`, {
      hint: `its volumes are: ${this.volumes.map((v) => v.name).join(', ')}`,
    });
  }

  get state(): GroupState {
    if (this.#suspended) return 'suspended';
    if (this.#bitmap) return 'resync-pending';
    if (this.#waiters.length > 0 || !this.journal.fits(1, 1, false)) return 'full';
    const u = this.journal.usage();
    if (Math.max(u.metaFraction, u.dataFraction) * 100 >= this.config.policy.nearlyFullPercent) return 'nearly-full';
    return 'active';
  }

  async status(): Promise<GroupStatus> {
    const j = this.journal;
    const u = j.usage();
    const hasRecords = j.writtenSeq > j.outSeq;
    let firstTs: bigint | null = null;
    if (hasRecords) {
      const raw = await j.readHeaders(j.outSeq, 1);
      firstTs = raw.readBigUInt64LE(16);
    }
    const round = (f: number): number => Math.round(f * 10000) / 100;
    return {
      dir: this.dir,
      groupId: this.config.groupId,
      state: this.state,
      policy: this.config.policy,
      journal: {
        path: j.path,
        size: j.layout.journalSize,
        metaSlots: j.layout.metaSlots,
        dataSize: j.layout.dataSize,
        out: { seq: j.outSeq, dataPos: j.outDataPos },
        in: { seq: j.allocSeq, dataPos: j.allocPos },
        records: u.records,
        bytes: u.bytes,
        usagePercent: { metadata: round(u.metaFraction), data: round(u.dataFraction) },
        appliedSeq: j.appliedSeq,
        pvolBehind: { records: j.allocSeq - 1n - j.appliedSeq, bytes: this.#sinceCheckpoint, unwrittenBytes: this.#pvolBehind },
      },
      sequence: { first: hasRecords ? j.outSeq : null, last: j.allocSeq > 1n ? j.allocSeq - 1n : null },
      time: { first: firstTs, last: this.#clock.last > 0n ? this.#clock.last : null },
      volumes: this.volumes.map((v, i) => ({
        name: v.name,
        index: i,
        size: v.size,
        extents: v.extents.map((e) => ({ ...e })),
        records: this.#perVolume[i]?.records ?? 0,
        bytes: this.#perVolume[i]?.bytes ?? 0,
      })),
      dirty: this.#bitmap ? { chunks: this.#bitmap.dirtyCount(), bytes: this.#bitmap.dirtyCount() * this.#bitmap.chunkSize, chunkSize: this.#bitmap.chunkSize } : null,
      waitingWriters: this.#waiters.length,
      base: this.#base ? { baseId: this.#base.baseId, scope: this.#base.scope } : null,
      markers: this.#markerNames.size,
      epoch: { generation: generationOf(this.epochs), startSeq: epochStart(this.epochs, generationOf(this.epochs)) },
      fenced: this.#fence,
      now: this.#clock.peek(),
      rates: this.#ratesNow(u),
    };
  }

  // ---- lifecycle ---------------------------------------------------------------

  /**
   * Writes waiting for journal space (policy `block`) fail now with
   * GROUP_CLOSED instead of waiting out their deadline, and so will any that
   * would have to wait from now on; writes that fit go on. Used by a server
   * that is stopping.
   */
  refuseWaitingWrites(): void {
    this.#closing = true;
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  /** Takes a checkpoint, marks the journal cleanly closed and releases the group. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer) clearInterval(this.#timer);
    try {
      if (!this.#failed) {
        await this.checkpoint();
        await this.journal.writeSuperblock({ flags: this.journal.superblock.flags | SB_CLEAN, lastTimestamp: this.#clock.last }, true);
        // Kept for the next open: no full read of the volumes at the next point.
        await this.#digests.save(this.volumes, this.journal.writtenSeq - 1n).catch(() => undefined);
      }
    } finally {
      await this.#release(true);
    }
  }

  /**
   * Lets the group go the way a crash would: nothing more is made durable
   * (no flush, no checkpoint, no clean mark), the writes already handed to
   * the files are waited for, the files are closed and the lock released.
   * The next open recovers (redoes the journal after the applied pointer).
   * For crash tests; a server never calls it.
   */
  async abandon(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer) clearInterval(this.#timer);
    this.#closing = true;
    await Promise.allSettled([...this.#inflight]);
    await this.#release(false);
  }

  async #release(clean: boolean): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w.resolve();
    await this.#pvolWriter.close();
    await this.journal.close();
    await Promise.all(this.volumes.map((v) => v.close()));
    await this.#bitmap?.close();
    if (clean) await this.#epochDirty?.persist().catch(() => undefined);
    await this.#epochDirty?.close();
    await this.#lock.release();
  }

  #ratesNow(u: { records: bigint; bytes: bigint }): GroupStatus['rates'] {
    const now = this.#mono();
    const c = this.#counters();
    this.#rates?.note(now, c);
    const oneMinute = this.#rates?.rate(now, c, MINUTE_NS) ?? null;
    const fifteenMinutes = this.#rates?.rate(now, c, 15n * MINUTE_NS) ?? null;
    const space = { records: u.records, bytes: u.bytes, metaSlots: this.journal.layout.metaSlots, dataSize: this.journal.layout.dataSize };
    return { oneMinute, fifteenMinutes, forecast: { oneMinute: forecast(space, oneMinute), fifteenMinutes: forecast(space, fifteenMinutes) } };
  }

  #checkUsable(): void {
    if (this.#closed) throw new JshipError('GROUP_CLOSED', `group ${this.dir} is closed`, { hint: 'open it again' });
    if (this.#failed) {
      throw new JshipError('IO', `group ${this.dir} takes no more writes after an I/O error: ${this.#failed.message}`, {
        hint: 'fix the cause (free space on the PVOL\'s file system, check the disk), then open the group again: recovery applies the journal to the PVOLs before anything is served',
        cause: this.#failed,
      });
    }
  }

  /** Writes and marks: refused once the group is fenced (a newer epoch of it exists elsewhere). */
  #checkWritable(): void {
    this.#checkUsable();
    const f = this.#fence;
    if (f) {
      throw new JshipError('GROUP_FENCED', `group ${this.dir} is fenced: ${lineageText(f.epochs)} of it exists (learned from ${f.from} at ${f.learnedAt}); this site is no longer its primary and takes no writes`, {
        hint: 'another site was promoted: write there. Reads and exports of what this site holds still work (docs/OPERATIONS.md, "Takeover")',
      });
    }
  }

  /**
   * Every chunk written in this epoch (a promoted group; undefined for
   * generation 1): per volume index, the chunk numbers in order, and the
   * chunk size. An old primary being demoted gets these chunks again.
   */
  epochDirty(): { chunkSize: number; chunks: number[][] } | undefined {
    const b = this.#epochDirty;
    return b ? { chunkSize: b.chunkSize, chunks: this.volumes.map((_v, i) => [...b.dirtyChunks(i)]) } : undefined;
  }

  /** The group's epoch lineage (group.json; empty: epoch 1). */
  get epochs(): Lineage {
    return this.config.epochs ?? [];
  }

  /** Set when the group learned of a newer epoch of itself: it takes no writes. */
  get fence(): Fence | null {
    return this.#fence;
  }

  /**
   * Fences the group: a newer epoch of it exists (told by `from`). Durable
   * (fenced.json) before it returns; writes and marks are refused from now
   * on, also after a restart. A second, older news changes nothing.
   */
  async fenceBy(epochs: Lineage, from: string): Promise<void> {
    if (this.#fence && this.#fence.epochs.length >= epochs.length) return;
    const f: Fence = { epochs, from, learnedAt: new Date().toISOString() };
    await writeFence(this.dir, f);
    this.#fence = f;
    this.#onEvent?.({ event: 'fenced', epoch: generationOf(epochs), from, hint: 'this group takes no more writes: another site was promoted' });
  }

  #fail(e: unknown): void {
    if (this.#failed) return;
    this.#failed = e instanceof Error ? e : new Error(String(e));
    this.#onEvent?.({ event: 'group-failed', error: this.#failed.message, hint: 'the group takes no more writes; close it and open it again once the cause is mended' });
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = (): void => {
      this.#inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  #enqueue(rec: EncodedRecord): Promise<void> {
    let b = this.#batches[this.#batches.length - 1];
    const len = rec.data?.length ?? 0;
    if (!b || b === this.#inWrite || b.records.length >= MAX_BATCH_RECORDS || b.bytes + len > MAX_BATCH_BYTES) {
      const d = deferred();
      b = { records: [], bytes: 0, done: d.promise, resolve: d.resolve, reject: d.reject };
      this.#batches.push(b);
    }
    b.records.push(rec);
    b.bytes += len;
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => void this.#writeLoop());
    }
    return b.done;
  }

  async #writeLoop(): Promise<void> {
    for (;;) {
      const b = this.#batches[0];
      if (!b) break;
      try {
        if (this.#failed) throw this.#failed;
        this.#inWrite = b;
        await this.journal.writeBatch(b.records);
        this.#batches.shift();
        b.resolve();
      } catch (e) {
        this.#batches.shift();
        this.#fail(e);
        b.reject(e);
      } finally {
        this.#inWrite = undefined;
      }
    }
    this.#writing = false;
  }

  #usageText(): string {
    const u = this.journal.usage();
    return `${u.records} records, ${(u.metaFraction * 100).toFixed(1)}% of slots, ${(u.dataFraction * 100).toFixed(1)}% of data`;
  }
}

function clockStepMarker(step: ClockStep): MarkerPayload {
  return { kind: 'clock-step', from: formatTime(step.expected), to: formatTime(step.actual), stepNs: String(step.actual - step.expected) };
}

/** Applies one journal record to the PVOLs (recovery redo). */
export async function applyToVolume(volumes: readonly Volume[], h: RecordHeader, data: Buffer): Promise<void> {
  if (h.type === RecordType.Marker) return;
  const vol = volumes[h.volume];
  if (!vol) throw new JshipError('JOURNAL_CORRUPT', `record ${h.seq} names volume ${h.volume}, which the group does not have`);
  if (h.type === RecordType.Update) await vol.write(h.offset, data);
  else await vol.writeZeroes(h.offset, h.length);
}
