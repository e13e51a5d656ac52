import { JshipError } from '../core/errors.js';
import type { EventLog } from '../core/events.js';
import { MonotonicClock, systemMonoNs, systemWallClock, type ClockStep } from '../core/clock.js';
import type { GroupConfig } from '../core/group-config.js';
import { generationOf, lineageText, type Lineage } from '../core/epoch.js';
import { checkMarkerName, encodeMarker, type MarkerPayload } from '../core/marker.js';
import { GROUP_VOLUME, RECORD_SIZE, RecordType, dataCrc, decodeRecord, encodeRecord, type RecordHeader } from '../core/record.js';
import { byteLength, joinBytes, sliceBytes, type Bytes } from '../core/bytes.js';
import { SB_CLEAN } from '../core/superblock.js';
import { formatTime } from '../core/time.js';
import { resolve } from 'node:path';
import { Volume } from '../volume/volume.js';
import { PvolWriter, SMALL_WRITE } from '../volume/pvol-writer.js';
import { OneMore } from '../core/one-more.js';
import { deferred, settlesWithin, type Deferred } from '../core/deferred.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { PointDigests } from './point-digests.js';
import type { PointDigest } from '../core/volume-digest.js';
import { appendMarkerLog, groupPaths, outsideAdvice, readFence, readGroupConfig, readOutside, writeFence, writeOutside, type Fence, type OutsideChange } from './group-files.js';
import { JournalVolume, READ_BATCH_BYTES, type JournalRecord } from './journal-volume.js';
import { DirLock } from '../io/dir-lock.js';
import { RangeOrder } from './range-order.js';
import { BaseRun, type BaseScope } from './base-reader.js';
import { GroupCommit } from './group-commit.js';
import { recoverGroup, refuseDemoted } from './group-recovery.js';
import { GroupRates, groupStatus, stateEvent, stateOf, usageText, type GroupState, type GroupStatus } from './group-status.js';
import { SpaceWaiters } from './space-waiters.js';
import { SuspendPolicy } from './suspend-policy.js';

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

/** Records kept in the journal for a reader in this process (JournalGroup.hold). */
export interface JournalHold {
  /** The first record kept when the hold began: the sequence number asked for, or journal-out if later. */
  readonly from: bigint;
  /** Keeps records from `seq` on from now (the reader is past those before it). */
  move(seq: bigint): void;
  release(): void;
}

/** What a journaled (or, while suspended, bitmap-tracked) write returns. */
export interface WriteResult {
  /** Sequence number of the (last) record of this write; while suspended, the last record before it. */
  seq: bigint;
  timestamp: bigint;
  /** False while the group is suspended: the write is only in the dirty bitmap. */
  journaled: boolean;
}

/** A base's turn in its group: settled when it ends; `run` once its "base started" marker is journaled. */
interface BaseTurn {
  ended: Deferred;
  run?: BaseRun;
}

export const DEFAULT_PVOL_LAG_BYTES = 64 * 1024 * 1024;
export const DEFAULT_CHECKPOINT_BYTES = 256 * 1024 * 1024;
/**
 * A flush rewrites the superblock's checkpoint at most this often (10 ms).
 * Records flushed since are found by recovery's scan past the checkpoint,
 * as the last flush's always were; a record there that a disk later damages
 * ends the log instead of failing the open (JOURNAL_CORRUPT).
 */
export const HEAD_EVERY_NS = 10_000_000n;
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
  readonly #commit: GroupCommit;
  readonly #space: SpaceWaiters;
  #policy!: SuspendPolicy;
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
  /** The volumes' chunk hashes, for the digest at each restore point and base completion. */
  #digests!: PointDigests;
  readonly #flushes = new OneMore(() => this.#doFlush());
  #dirtySinceFlush = false;
  /** Volume records given out since the group was opened (writes, zeroes, trims, scanned changes). */
  #volumeRecords = 0;
  #failed: Error | undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  /**
   * The base being taken, from the moment it is asked for (its run is set once
   * its "base started" marker is journaled) until it ends: one at a time.
   */
  #baseTurn: BaseTurn | undefined;
  #consumers: readonly JournalConsumer[] | undefined;
  #mono: () => bigint = systemMonoNs;
  /** When a flush last rewrote the superblock's checkpoint (monotonic ns). */
  #headWrittenAt: bigint | undefined;
  #onEvent: EventLog | undefined;
  #lastState: GroupState = 'active';
  #rates!: GroupRates;
  #purging: Promise<unknown> = Promise.resolve();
  /** Where each hold's kept records begin. */
  readonly #holds = new Map<symbol, bigint>();
  #fence: Fence | null = null;
  #outside: OutsideChange | null = null;
  /** A promoted group: every chunk written in its epoch (what an old primary that is demoted must get again). */
  #epochDirty: DirtyBitmap | undefined;
  /** Chunks marked on disk (a suspended write) since the last flush: the flush syncs the epoch bitmap too. */
  #epochMarked = false;

  private constructor(dir: string, config: GroupConfig, volumes: Volume[], journal: JournalVolume, lock: DirLock, clock: MonotonicClock, markerNames: Set<string>, perVolume: Array<{ records: number; bytes: number }>, onEvent: EventLog | undefined) {
    this.dir = dir;
    this.config = config;
    this.volumes = volumes;
    this.journal = journal;
    this.#lock = lock;
    this.#clock = clock;
    this.#markerNames = markerNames;
    this.#perVolume = perVolume;
    this.#onEvent = onEvent;
    this.#commit = new GroupCommit(journal, { failed: () => this.#failed, fail: (e) => this.#fail(e), written: () => this.#wake() });
    this.#space = new SpaceWaiters({
      dir,
      timeoutMs: config.policy.blockTimeoutMs,
      fits: (count, bytes) => journal.fits(count, bytes, false),
      check: () => this.#checkUsable(),
      changed: () => this.#noteState(),
      usage: () => usageText(journal),
      onEvent,
    });
  }

  /**
   * Opens a group for writing: takes the directory lock, opens the journal
   * and the volumes, recovers after a crash (finds the end of the log and
   * re-applies to the PVOLs every record not known to be on them:
   * group-recovery.ts) before anything is served.
   */
  static async open(dir: string, opts: OpenGroupOptions = {}): Promise<JournalGroup> {
    dir = resolve(dir);
    const config = await readGroupConfig(dir);
    const paths = groupPaths(dir);
    const lock = await DirLock.acquire(paths.lock, `group ${dir}`);
    const volumes: Volume[] = [];
    let journal: JournalVolume | undefined;
    let epochDirty: DirtyBitmap | undefined;
    let policy: SuspendPolicy | undefined;
    try {
      await refuseDemoted(dir);
      journal = await JournalVolume.open(config.journal.path, config.groupId);
      for (const v of config.volumes) volumes.push(await Volume.open(v));
      // Persisted before each purge: what the journal still holds is marked again from its records.
      epochDirty = config.epochs && config.epochs.length > 0 ? await DirtyBitmap.open(paths.epochBitmap, config.chunkSize, volumes.map((v) => v.size)) : undefined;
      const found = await recoverGroup(dir, config, journal, volumes, epochDirty);
      const clock = new MonotonicClock(found.lastTimestamp, opts.wallClock ?? systemWallClock(), opts.monoClock ?? systemMonoNs);
      const group = new JournalGroup(dir, config, volumes, journal, lock, clock, found.markerNames, found.perVolume, opts.onEvent);
      policy = await SuspendPolicy.open({
        dir,
        config,
        journal,
        volumeSizes: volumes.map((v) => v.size),
        mark: (p) => group.appendMarker(p, true),
        changed: (why) => group.#noteState(why),
      }, found.flags);
      group.#policy = policy;
      group.#fence = await readFence(dir);
      group.#epochDirty = epochDirty;
      group.#digests = await PointDigests.open(dir, volumes, config.chunkSize, journal.writtenSeq - 1n, group.#order);
      // Volume files changed since the last clean close were written outside jship: kept until a scan or a full base.
      group.#outside = await readOutside(dir);
      await group.#noteOutside(group.#digests.changedOutside);
      group.#replyAfterJournal = opts.replyAfterJournal ?? false;
      group.#pvolLag = opts.pvolLagBytes ?? DEFAULT_PVOL_LAG_BYTES;
      group.#checkpointBytes = opts.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
      group.#consumers = opts.consumers;
      group.#lastState = group.state;
      group.#mono = opts.monoClock ?? systemMonoNs;
      group.#rates = new GroupRates(journal, group.#mono);
      const interval = opts.checkpointIntervalMs ?? 5000;
      if (interval > 0) {
        group.#timer = setInterval(() => {
          if (group.#closed || group.#failed) return;
          if (group.#dirtySinceFlush || group.#sinceCheckpoint > 0 || group.journal.appliedSeq < group.journal.writtenSeq - 1n) group.checkpoint().catch(() => undefined);
          // A quiet group looks at its volume files all the same (a checkpoint looks as it ends).
          else group.#noticeWrittenOutside().catch(() => undefined);
        }, interval);
        group.#timer.unref();
      }
      return group;
    } catch (e) {
      await journal?.close();
      await epochDirty?.close();
      await policy?.close();
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
  async write(volume: string | number, offset: number, data: Bytes, opts: { fua?: boolean } = {}): Promise<WriteResult> {
    return this.#submit(RecordType.Update, volume, offset, byteLength(data), data, opts.fua ?? false);
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
        this.#policy.bitmap?.sync(),
        epochMarked ? this.#epochDirty?.sync() : undefined,
      ]);
      this.journal.noteDurable(headSeq, headDataPos);
      // The superblock's checkpoint is where recovery stops requiring records intact and takes what it finds
      // (FORMAT "Recovery"): rewritten at most every HEAD_EVERY_NS (and by every other superblock write), not
      // after each FLUSH: its pwrite and the extra page in the next fdatasync cost qd-1 write + FLUSH p99 0.1-0.2 ms.
      const now = this.#mono();
      if (this.#headWrittenAt === undefined || now - this.#headWrittenAt >= HEAD_EVERY_NS) {
        this.#headWrittenAt = now;
        // Made durable by the next sync; until then the previous copy stands.
        await this.journal.writeSuperblock({ lastTimestamp: this.#clock.last }, false);
      }
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
      await this.#noticeWrittenOutside();
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

  async #submit(type: RecordType, volume: string | number, offset: number, length: number, data: Bytes | undefined, fua: boolean, toPvol = true): Promise<WriteResult> {
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
    if (this.#policy.suspended && !(await this.#policy.tryResume())) return this.#suspendedWrite(type, volIdx, offset, length, data, fua);
    if (this.#space.length > 0 || !this.journal.fits(pieces, bytes, false)) {
      if (this.config.policy.journalFull === 'suspend') {
        await this.#policy.suspend(`journal full (${usageText(this.journal)})`);
        return this.#suspendedWrite(type, volIdx, offset, length, data, fua);
      }
      await this.#space.wait(pieces, bytes);
      this.#checkUsable();
    }
    // From here to the end of the loop nothing awaits: numbers, journal order and PVOL order are taken together.
    const applied: Promise<void>[] = [];
    const journaled: Promise<void>[] = [];
    let last: { seq: bigint; timestamp: bigint } = { seq: 0n, timestamp: 0n };
    for (let done = 0, i = 0; i < pieces; i++) {
      const len = type === RecordType.Update ? Math.min(max, length - done) : length;
      const piece = data && sliceBytes(data, done, done + len);
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
            if (piece) await (len <= SMALL_WRITE ? vol.writeBatched(this.#pvolWriter, off, joinBytes(piece)) : vol.write(off, piece));
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
  #allocRecord(type: RecordType, volume: number, offset: number, length: number, data: Bytes | undefined, stamp?: bigint): { seq: bigint; timestamp: bigint; journaled: Promise<void> } {
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
    const { seq, dataPos } = this.journal.allocate(data ? byteLength(data) : 0);
    if (volume !== GROUP_VOLUME && type !== RecordType.Marker) {
      this.#digests.beforeWrite(volume, offset, length);
      this.#epochDirty?.setRange(volume, offset, length);
    }
    // Per record: a clock read; the counters only when a sample is due (every 5 s).
    this.#rates?.tick();
    this.#noteState();
    const header = encodeRecord({
      type, flags: 0, volume, seq, timestamp, offset, length, dataPos, aux: 0n, dataCrc: data ? dataCrc(data) : 0,
    });
    if (volume !== GROUP_VOLUME) {
      this.#volumeRecords++;
      const pv = this.#perVolume[volume] as { records: number; bytes: number };
      pv.records++;
      pv.bytes += type === RecordType.Update ? length : 0;
    }
    const journaled = this.#commit.enqueue({ seq, dataPos, header, data });
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
    if (!useReserve && (this.#space.length > 0 || !this.journal.fits(1, data.length, false))) await this.#space.wait(1, data.length);
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
    if (this.#policy.suspended || this.#policy.bitmap) {
      throw new JshipError('JOURNAL_SUSPENDED', `no restore point can be taken: the group is ${this.#policy.suspended ? 'suspended' : 'waiting for a resync base'}`, {
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
    let limit = this.journal.appliedSeq < upto ? this.journal.appliedSeq : upto;
    // Nor into what a reader of this process holds (looked at after the last wait: a hold taken meanwhile counts).
    for (const from of this.#holds.values()) if (from - 1n < limit) limit = from - 1n;
    if (limit < this.journal.outSeq) return this.journal.outSeq;
    // The epoch's written chunks are durable before the records that show them go.
    await this.#epochDirty?.persist();
    await this.#epochDirty?.sync();
    await this.journal.purge(limit, (h) => {
      const pv = this.#perVolume[h.volume];
      if (!pv) return;
      pv.records--;
      pv.bytes -= h.type === RecordType.Update ? h.length : 0;
    });
    this.#space.wake();
    // An idle suspended group resumes as soon as space is back, not only at the next client write.
    if (this.#policy.suspended) await this.#policy.tryResume();
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

  /**
   * Keeps the records from `seq` (or from journal-out, if it is later) in
   * the journal until released, whatever the consumers have secured: an
   * export reads records after it starts, and a purge another consumer asks
   * for meanwhile (a link secondary's confirmation, while the tape chain
   * pins nothing before its first tape) took them from under it
   * (JOURNAL_PURGED). Waits for a purge that is running; `from` says where
   * the kept records begin.
   */
  async hold(seq: bigint): Promise<JournalHold> {
    await this.#purging;
    const key = Symbol('hold');
    const from = seq > this.journal.outSeq ? seq : this.journal.outSeq;
    this.#holds.set(key, from);
    return {
      from,
      move: (to) => {
        if (this.#holds.has(key)) this.#holds.set(key, to);
      },
      release: () => {
        this.#holds.delete(key);
      },
    };
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
    this.#onEvent?.({ event: stateEvent(was, now), from: was, state: now, usage: usageText(this.journal), ...(why ? { why } : {}) });
    this.#wake();
  }

  /** Those waiting in nextChange. */
  readonly #changeWaiters = new Set<() => void>();

  /** Wakes those waiting in nextChange (after every batch written: nothing to do, most of the time). */
  #wake(): void {
    if (this.#changeWaiters.size === 0) return;
    for (const w of [...this.#changeWaiters]) w();
  }

  /**
   * Resolves after the next batch of records is written to the journal,
   * the group's state changes (a suspension, a resync asked for) or it
   * fails or closes, after `ms`, or once `signal` aborts, whichever comes
   * first, and leaves nothing behind (timer, listener): a link session
   * waits on this for records to send, instead of looking every few
   * milliseconds.
   */
  nextChange(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        this.#changeWaiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.#changeWaiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  // ---- suspend policy ----------------------------------------------------------

  async #suspendedWrite(type: RecordType, volIdx: number, offset: number, length: number, data: Bytes | undefined, fua: boolean): Promise<WriteResult> {
    const vol = this.volumes[volIdx] as Volume;
    const bitmap = this.#policy.bitmap as DirtyBitmap;
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
   * the chunks of the dirty bitmap. One base at a time: with `waitMs`, one
   * being taken is waited for (`onWait` told once), else BASE_IN_PROGRESS.
   */
  async beginBase(opts: { scope?: BaseScope; volumes?: string[]; chunks?: ReadonlyArray<readonly number[]>; for?: string; waitMs?: number; onWait?: (baseId: bigint | null) => void } = {}): Promise<BaseRun> {
    this.#checkUsable();
    const waitMs = opts.waitMs ?? 0;
    const deadline = Date.now() + waitMs;
    let told = false;
    // Checked and taken with no await between: two callers never both get through.
    for (let turn = this.#baseTurn; turn; turn = this.#baseTurn) {
      const left = deadline - Date.now();
      if (left <= 0) {
        const which = turn.run ? `base ${turn.run.baseId} is still being taken` : 'another base is being started';
        throw new JshipError('BASE_IN_PROGRESS', `${which}${waitMs > 0 ? ` (waited ${waitMs / 1000} s)` : ''}`, {
          hint: 'one base at a time per group: run it again once that one completes (jship status shows it); an export waits as long as its --wait says',
        });
      }
      if (!told) opts.onWait?.(turn.run?.baseId ?? null);
      told = true;
      // Woken when that base ends, or at once when the group closes.
      await settlesWithin(turn.ended.promise, left);
      this.#checkUsable();
    }
    const turn: BaseTurn = { ended: deferred() };
    this.#baseTurn = turn;
    try {
      const scope = opts.scope ?? (this.#policy.bitmap ? 'resync' : 'full');
      if (this.#policy.suspended && !(await this.#policy.tryResume())) {
        throw new JshipError('JOURNAL_SUSPENDED', 'the group is suspended and its journal is still nearly full', {
          hint: 'export and purge the journal first; the resync base needs journal space for its markers',
        });
      }
      if (scope === 'resync' && !this.#policy.bitmap && !opts.chunks) {
        throw new JshipError('USAGE', 'a resync base needs a dirty bitmap; this group was never suspended', { hint: 'take a full base' });
      }
      const names = opts.volumes ?? this.config.volumes.map((v) => v.name);
      const indexes = names.map((n) => this.volumeIndex(n));
      const started = await this.appendMarker({ kind: 'base-started', scope, volumes: names, ...(opts.for !== undefined ? { for: opts.for } : {}) });
      const run = new BaseRun(this.#baseHooks(this.#policy.suspensions), started.seq, scope, indexes, this.config.chunkSize, opts.chunks);
      turn.run = run;
      return run;
    } catch (e) {
      this.#endBaseTurn(turn);
      throw e;
    }
  }

  /** The base of `turn` ended (or never started): the next one may begin. */
  #endBaseTurn(turn: BaseTurn): void {
    if (this.#baseTurn === turn) this.#baseTurn = undefined;
    turn.ended.resolve();
  }

  #baseHooks(suspensionsAtStart: number): ConstructorParameters<typeof BaseRun>[0] {
    return {
      volumes: this.volumes,
      bitmap: () => this.#policy.bitmap,
      order: this.#order,
      position: () => this.journal.allocSeq - 1n,
      now: () => this.#clock.peek(),
      track: (p) => this.#track(p),
      check: () => this.#checkUsable(),
      mark: (p) => this.appendMarker(p, p.kind !== 'base-started'),
      finished: async (run, ok) => {
        try {
          // A base that holds every dirty chunk clears the bitmap (suspend-policy.ts).
          await this.#policy.baseDone(run, ok, suspensionsAtStart, this.volumes.length);
          // A full base read the volumes as they are, changes made outside jship included.
          // (Kept when that cannot be written: a note too many, never a base failed for it.)
          if (ok && run.scope === 'full') await this.journaledOutside(run.volumes.map((i) => this.volumes[i]?.name ?? '')).catch(() => undefined);
          await this.flush();
        } finally {
          // Only then the next base: one waiting would otherwise start against a bitmap being closed.
          const turn = this.#baseTurn;
          if (turn?.run === run) this.#endBaseTurn(turn);
        }
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
  async *records(from?: bigint, opts: { batch?: number; reuse?: boolean; to?: bigint; maxBytes?: number } = {}): AsyncGenerator<JournalRecord> {
    let seq = from ?? this.journal.outSeq;
    const batch = opts.batch ?? 256;
    const buffers = opts.reuse ? [Buffer.allocUnsafeSlow(READ_BATCH_BYTES), Buffer.allocUnsafeSlow(READ_BATCH_BYTES)] : [];
    let turn = 0;
    // What the caller takes at most: records before `to`, and (64 + data) bytes until `maxBytes` is reached
    // (the record that reaches it included). Nothing past it is read, or checked, for nothing.
    let budget = opts.maxBytes ?? Infinity;
    const read = async (): Promise<JournalRecord[]> => {
      const left = opts.to === undefined ? batch : Math.min(batch, Number(opts.to - seq));
      if (left <= 0 || budget <= 0) return [];
      const recs = await this.journal.readRecords(seq, left, Math.min(READ_BATCH_BYTES, budget), buffers[turn++ % 2]);
      seq += BigInt(recs.length);
      for (const r of recs) budget -= RECORD_SIZE + r.data.length;
      return recs;
    };
    // The next batch is read while the caller works on this one (into the other buffer).
    let next = read();
    for (;;) {
      this.#checkUsable();
      const recs = await next;
      if (recs.length === 0) return;
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

  /**
   * Volume records given out since the group was opened: whether anyone
   * writes. A one-shot command (an export with no server) sees it stand still.
   */
  get volumeRecords(): number {
    return this.#volumeRecords;
  }

  /**
   * Journal pressure: nearly full (or full) while someone writes — writers
   * wait for space, or volume records were given out since `since` (a
   * `volumeRecords` taken before). Consumers then secure what they hold in
   * smaller steps, so that the journal is purged sooner.
   */
  underPressure(since: number): boolean {
    if (this.#space.length === 0 && this.#volumeRecords <= since) return false;
    const state = this.state;
    return state === 'full' || state === 'nearly-full';
  }

  get state(): GroupState {
    return stateOf({
      suspended: this.#policy.suspended,
      resyncPending: this.#policy.bitmap !== undefined,
      waitingWriters: this.#space.length,
      journal: this.journal,
      nearlyFullPercent: this.config.policy.nearlyFullPercent,
    });
  }

  /** Adds volumes changed outside jship to outside.json (kept until a scan or a full base journals them). */
  async #noteOutside(changed: readonly string[]): Promise<void> {
    const fresh = changed.filter((n) => !this.#outside?.volumes.includes(n));
    if (fresh.length === 0) return;
    this.#outside = { volumes: [...(this.#outside?.volumes ?? []), ...fresh], noticedAt: this.#outside?.noticedAt ?? new Date().toISOString() };
    // Told by this process even if it cannot be kept (a full file system): never a reason to fail an open or a checkpoint.
    await writeOutside(this.dir, this.#outside).catch(() => undefined);
  }

  /**
   * At each checkpoint, and every checkpoint interval while the group is
   * quiet: volume files another process wrote while the group has them open
   * (Volume.changedOutside: seen only where none of the group's own writes
   * began since the last look), told as at an open.
   */
  async #noticeWrittenOutside(): Promise<void> {
    let changed: string[];
    try {
      changed = this.volumes.filter((v) => v.changedOutside()).map((v) => v.name);
    } catch {
      return;
    }
    if (changed.length === 0) return;
    this.#onEvent?.({ event: 'changed-outside', volumes: changed, hint: `another process wrote these volume files: ${outsideAdvice(this.dir)}` });
    await this.#noteOutside(changed);
  }

  /**
   * The volumes whose changes made outside jship are now in the journal (a
   * scan journaled them, a full base read them): no longer listed in
   * outside.json.
   */
  async journaledOutside(volumes: readonly string[]): Promise<void> {
    const o = this.#outside;
    if (!o || !o.volumes.some((v) => volumes.includes(v))) return;
    const left = o.volumes.filter((v) => !volumes.includes(v));
    this.#outside = left.length > 0 ? { ...o, volumes: left } : null;
    await writeOutside(this.dir, this.#outside);
  }

  /** The group's status (group-status.ts). */
  status(): Promise<GroupStatus> {
    return groupStatus({
      dir: this.dir,
      config: this.config,
      state: this.state,
      journal: this.journal,
      pvol: { sinceCheckpoint: this.#sinceCheckpoint, unwritten: this.#pvolBehind },
      clock: { last: this.#clock.last, now: this.#clock.peek() },
      volumes: this.volumes,
      perVolume: this.#perVolume,
      bitmap: this.#policy.bitmap,
      waitingWriters: this.#space.length,
      base: this.#baseTurn?.run,
      markers: this.#markerNames.size,
      epochs: this.epochs,
      fence: this.#fence,
      outside: this.#outside,
      rates: this.#rates,
    });
  }

  // ---- lifecycle ---------------------------------------------------------------

  /**
   * Writes waiting for journal space (policy `block`) fail now with
   * GROUP_CLOSED instead of waiting out their deadline, and so will any that
   * would have to wait from now on; writes that fit go on. Used by a server
   * that is stopping.
   */
  refuseWaitingWrites(): void {
    this.#space.stop();
    this.#space.releaseAll();
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
    this.#space.stop();
    await Promise.allSettled([...this.#inflight]);
    await this.#release(false);
  }

  /**
   * Lets go of every file and lock, each even when one before it fails (a
   * group whose journal failed to close kept its volumes' locks and its own
   * for as long as the process lived); the first failure is thrown after.
   */
  async #release(clean: boolean): Promise<void> {
    this.#closed = true;
    this.#wake();
    this.#space.releaseAll();
    // Whoever waits for a base is told the group closed, not left until the end of its wait.
    if (this.#baseTurn) this.#endBaseTurn(this.#baseTurn);
    const steps: Array<() => Promise<unknown>> = [
      () => this.#pvolWriter.close(),
      () => this.journal.close(),
      async () => {
        const closed = await Promise.allSettled(this.volumes.map((v) => v.close()));
        const failed = closed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      },
      async () => this.#policy.bitmap?.close(),
      async () => (clean ? this.#epochDirty?.persist().catch(() => undefined) : undefined),
      async () => this.#epochDirty?.close(),
      () => this.#lock.release(),
    ];
    const failures: unknown[] = [];
    for (const step of steps) await step().catch((e: unknown) => failures.push(e));
    if (failures.length > 0) throw failures[0];
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
    this.#wake();
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    const done = (): void => {
      this.#inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

}

function clockStepMarker(step: ClockStep): MarkerPayload {
  return { kind: 'clock-step', from: formatTime(step.expected), to: formatTime(step.actual), stepNs: String(step.actual - step.expected) };
}
