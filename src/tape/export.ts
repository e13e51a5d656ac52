import { JshipError, isJshipError, param } from '../core/errors.js';
import { encodeRecord } from '../core/record.js';
import type { JournalGroup, JournalHold } from '../journal/journal-group.js';
import type { TapeKey } from './crypto.js';
import type { TapeDestination } from './destination.js';
import { MediaSetWriter, minMediaSize, type WrittenTape } from './tape-writer.js';
import { formatSize } from '../core/sizes.js';
import { trailerEffects, type TapeTrailer } from './label.js';
import { SegmentKind } from './segment.js';
import { FramePool } from './frame-pool.js';
import { expandTapeSources, tapeHashFile } from './tape-file.js';
import { isStoreUrl, type StoreSettings } from './stores.js';
import { readChainState, writeChainState, type ChainState } from './chain-state.js';

export interface ExportOptions {
  destination: TapeDestination;
  /** Also write a base journal of every volume, read while writes go on. */
  base?: boolean;
  /**
   * Write a resync base of these chunks (by volume index) instead: what an
   * old primary being demoted lacks (link only, one secondary's tape).
   */
  resyncChunks?: ReadonlyArray<readonly number[]>;
  /** With resyncChunks: the id of the request they answer, in the base-started marker (`for`). */
  resyncFor?: string;
  mediaSize?: number;
  /** Do not purge until an acknowledgement covers the tapes. */
  keepUntilAck?: boolean;
  /** A stream destination: purge once the stream closed cleanly (else it waits for an ack). */
  purgeOnClose?: boolean;
  key?: TapeKey;
  /** Write a tape even when there is nothing to export. */
  allowEmpty?: boolean;
  segmentBytes?: number;
  pool?: FramePool;
  /** zstd's level for the frames, when no `pool` is given (the pool's own otherwise). Default 1. */
  zstdLevel?: number;
  /** How to reach the store, for a tape committed to s3:// before a crash (see reconcile). */
  s3?: StoreSettings;
  /**
   * Another chain than the tape chain (a link secondary's): where it stands
   * and how to record each tape sent. Default: GROUP_DIR/chain.json.
   */
  chain?: {
    state: ChainState;
    /** Tapes of a link secondary's chain; absent: tapes of the tape chain (numbered from `state`), its state kept by the caller. */
    link?: { secondary: string };
    /** Runs before a tape's end reaches the destination: `dataEnd` is the journal data position after its last update. */
    beforeSend: (t: { serial: number; sha256: string; trailer: TapeTrailer }, dataEnd: bigint | null) => Promise<void>;
  };
  /**
   * How long to wait for an export of the same chain that is running
   * (default 5 minutes), then EXPORT_BUSY; and, for a base, as long again for
   * a base someone else is taking (a link secondary's), then BASE_IN_PROGRESS.
   */
  waitMs?: number;
  /** Told once when the export's base waits for another base (its id; null: one being started). */
  onBaseWait?: (baseId: bigint | null) => void;
  /** Write plaintext tapes although the chain's last tape is encrypted. */
  allowPlaintext?: boolean;
  /** Parity frames at this share of each group of frames (1..100 %). */
  parity?: number;
  /**
   * At the end of a medium (a full directory, a drive's end): load the next
   * one (runs --next-media, or asks on a terminal); throws to stop. The tapes
   * finished on the medium stay counted; the one cut short is written again.
   */
  nextMedia?: (m: NextMedium) => Promise<void>;
  /** Stop taking update records after this many bytes of them (the rest goes with the next export). */
  maxUpdateBytes?: number;
  /**
   * Under journal pressure (JournalGroup.underPressure), stop taking update
   * records once they fill a sixteenth of the journal's data area, the step
   * in which a tape-chain export's tapes end then: a link tape that is
   * confirmed sooner lets the journal be purged sooner.
   */
  endUnderPressure?: boolean;
  onProgress?: (rawBytes: number) => void;
}

/** What a --next-media command is told (as JSHIP_MEDIA_* variables). */
export interface NextMedium {
  where: string;
  /** The number of the medium to load, from 2. */
  medium: number;
  /** Serials of the tapes finished on the medium that ended. */
  counted: number[];
  /** The serial the next tape will have. */
  nextSerial: number;
}

export interface ExportResult {
  nothingToExport: boolean;
  tapes: WrittenTape[];
  records: number;
  updates: { firstSeq: bigint; lastSeq: bigint; firstTs: bigint; lastTs: bigint } | null;
  base: { baseId: bigint; scope: 'full' | 'resync'; completeSeq: bigint; records: number; bytes: number } | null;
  /** Bytes of records written (headers and data, before compression). */
  rawBytes: number;
  tapeBytes: number;
  /** Journal-out after the purge (records before it are freed). */
  journalOut: bigint;
  /** True when the tapes wait for an acknowledgement before the journal is purged. */
  awaitingAck: boolean;
  /** Records purged from the journal before any export took them: the replica will see this gap. */
  lostBeforeExport: { from: bigint; to: bigint } | null;
  /** Journal data position after the last update record exported (for lag in bytes). */
  dataEnd: bigint | null;
  /** Something around the tapes did not work (the carry manifest not written), the tapes are fine. */
  warnings: string[];
}

/**
 * Exports the journal from the tape chain's position (not from journal-out:
 * records held for an acknowledgement are not written twice) up to the last
 * record written, optionally after a base; commits each tape durably, then
 * purges what the chain has secured (DESIGN invariant 5).
 */
export async function exportGroup(group: JournalGroup, opts: ExportOptions): Promise<ExportResult> {
  // A link secondary's chain is exported by its own session, one tape at a time.
  if (opts.chain) return exportChain(group, opts);
  return chainTurn(group, opts.waitMs ?? DEFAULT_EXPORT_WAIT_MS, () => exportChain(group, opts));
}

/** How long an export waits for the one before it (in the owner of the group) before EXPORT_BUSY. */
export const DEFAULT_EXPORT_WAIT_MS = 5 * 60_000;

/** The tail of each group's queue of tape-chain exports, in the process that owns the group. */
const exportQueues = new WeakMap<JournalGroup, Promise<void>>();

/**
 * Runs what changes a group's tape chain (exports, acknowledgements) one
 * after the other: two exports at once would both take the chain's next
 * serial, and an export holds its copy of chain.json while it runs.
 */
export async function chainTurn<T>(group: JournalGroup, waitMs: number, run: () => Promise<T>): Promise<T> {
  const before = exportQueues.get(group) ?? Promise.resolve();
  let release = (): void => undefined;
  const mine = new Promise<void>((r) => {
    release = r;
  });
  exportQueues.set(group, before.then(() => mine));
  let timer: NodeJS.Timeout | undefined;
  const busy = await Promise.race([
    before.then(() => false),
    new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), waitMs);
    }),
  ]);
  clearTimeout(timer);
  if (busy) {
    // Keep the queue's order: this turn passes as soon as the export before it ends.
    void before.then(release);
    throw new JshipError('EXPORT_BUSY', `another export of ${group.dir} has been running for longer than ${Math.round(waitMs / 1000)} s`, {
      hint: 'it goes on; run this export again once it ends (jship status shows the chain), or give a longer --wait',
    });
  }
  try {
    return await run();
  } finally {
    release();
  }
}

async function exportChain(group: JournalGroup, opts: ExportOptions): Promise<ExportResult> {
  let hold: JournalHold | undefined;
  try {
    return await exportHeld(group, opts, (h) => {
      hold = h;
    });
  } finally {
    hold?.release();
  }
}

/** exportChain, the journal's records it reads held (`held`) from the moment it knows where it starts. */
async function exportHeld(group: JournalGroup, opts: ExportOptions, held: (h: JournalHold) => void): Promise<ExportResult> {
  if (opts.mediaSize !== undefined && !opts.destination.splittable) {
    throw new JshipError('USAGE', `${param('mediaSize')} needs a directory to write a media set into, not ${opts.destination.where}`, { hint: `give ${param('to')} a directory` });
  }

  const chain = opts.chain;
  let state = chain ? chain.state : await reconcile(group.dir, await readChainState(group.dir), opts.s3);
  const save = chain ? async () => undefined : (s: ChainState) => writeChainState(group.dir, s);
  if (!opts.key && !opts.allowPlaintext && typeof state.lastKeyId === 'string') {
    throw new JshipError('USAGE', `the tape chain's tapes so far are encrypted (key id ${state.lastKeyId}), and no ${param('encryptKey')} was given`, {
      hint: `give ${param('encryptKey')} FILE; to write plaintext tapes from now on, add ${param('allowPlaintext')} (the replica then needs import ${param('allowPlaintext')} for them)`,
    });
  }
  const keep = opts.keepUntilAck === true || (!opts.destination.durable && opts.purgeOnClose !== true);
  let from = BigInt(state.exportedSeq) + 1n;
  let lostBeforeExport: ExportResult['lostBeforeExport'] = null;
  // Kept until the export ends: before the chain's first tape it pins nothing, and a link secondary's
  // confirmation purged the records this export was about to read (JOURNAL_PURGED).
  const hold = await group.hold(from);
  held(hold);
  if (from < hold.from) {
    lostBeforeExport = { from, to: hold.from - 1n };
    from = hold.from;
  }
  // After a suspension whose resync base another consumer took, only a full base heals this chain.
  const healByFullBase = !chain && state.sawSuspension === true && group.state !== 'suspended' && group.state !== 'resync-pending';
  const fullBase = opts.resyncChunks === undefined && (opts.base === true || healByFullBase);
  const listed = opts.resyncChunks;
  if (!fullBase && !listed && group.state !== 'resync-pending' && from >= group.journal.writtenSeq && !opts.allowEmpty) {
    return {
      warnings: [], nothingToExport: true, tapes: [], records: 0, updates: null, base: null, rawBytes: 0, tapeBytes: 0,
      journalOut: group.journal.outSeq, awaitingAck: state.pendingAcks.length > 0, lostBeforeExport, dataEnd: null,
    };
  }
  // After a suspension (journaling resumed, the dirty bitmap still holds regions), every export
  // carries a resync base of those regions until one completes: no restore point exists until then.
  const resync = !fullBase && (listed !== undefined || group.state === 'resync-pending');
  if (opts.mediaSize !== undefined) {
    // Checked before anything is written: the largest record to export (a record never spans tapes)
    // and, with a base, a base chunk must fit on one tape with a label and a trailer.
    const last = group.journal.writtenSeq - 1n;
    const largest = Math.max(from <= last ? await group.journal.largestData(from, last) : 0, fullBase || resync ? group.config.chunkSize : 0);
    const need = minMediaSize(largest, opts.key !== undefined, group.volumes.length, opts.parity);
    if (opts.mediaSize < need) {
      throw new JshipError('USAGE', `${param('mediaSize')} ${formatSize(opts.mediaSize)} cannot hold the largest segment of this export (a ${fullBase || resync ? 'base chunk or ' : ''}record of ${formatSize(largest)}, with a label and a trailer: records never span tapes)`, {
        hint: `give a ${param('mediaSize')} of at least ${formatSize(need)}; media of several times that hold several records each. Nothing was written`,
      });
    }
  }
  const warnings: string[] = [];
  // One base at a time per group: one being taken for someone else (a link secondary registering) is waited for.
  const baseTurn = {
    waitMs: opts.waitMs ?? DEFAULT_EXPORT_WAIT_MS,
    onWait: (id: bigint | null) => {
      warnings.push(`waited for ${id !== null ? `base ${id}` : 'a base'} (taken for another consumer) to complete before taking this export's`);
      opts.onBaseWait?.(id);
    },
  };
  const listedFor = { ...(listed ? { chunks: listed } : {}), ...(opts.resyncFor !== undefined ? { for: opts.resyncFor } : {}) };
  let baseRun = fullBase || resync ? await group.beginBase({ scope: fullBase ? 'full' : 'resync', ...listedFor, ...baseTurn }) : undefined;
  let baseInfo: ExportResult['base'] = null;
  const pool = opts.pool ?? new FramePool(opts.zstdLevel !== undefined ? { level: opts.zstdLevel } : {});
  // Under journal pressure (nearly full while writes come in, or writers waiting) a tape of the tape
  // chain ends once it holds a sixteenth of the journal's data area: it is committed and purged while
  // the export goes on. With no one writing (a one-shot export, no server) freed space helps no one
  // and the export stays one tape.
  const relieve = !chain && !keep;
  const relieveAfter = Math.floor(group.journal.layout.dataSize / 16);
  const writesBefore = group.volumeRecords;
  /** Whether `bytes` of a tape are enough to end it now: a sixteenth of the journal, under pressure. */
  const enoughUnderPressure = (bytes: number): boolean => bytes >= relieveAfter && group.underPressure(writesBefore);
  const newWriter = (): MediaSetWriter => new MediaSetWriter({
    groupId: group.config.groupId,
    volumes: group.volumes.map((v) => ({ name: v.name, size: v.size })),
    ...(group.config.zeroedTs !== undefined ? { zeroedTs: group.config.zeroedTs } : {}),
    ...(group.config.epochs ? { epochs: group.config.epochs } : {}),
    firstSerial: state.nextSerial,
    prevSha256: state.lastTapeSha256,
    destination: opts.destination,
    pool,
    ...(opts.key ? { key: opts.key } : {}),
    ...(opts.mediaSize !== undefined ? { mediaSize: opts.mediaSize } : {}),
    ...(opts.parity !== undefined ? { parity: opts.parity } : {}),
    digests: (a: bigint, b: bigint) => group.digestsBetween(a, b),
    ...(opts.segmentBytes !== undefined ? { segmentBytes: opts.segmentBytes } : {}),
    ...(opts.onProgress ? { onProgress: (n: number) => opts.onProgress?.(rawBefore + n) } : {}),
    ...(baseRun ? { base: { baseId: baseRun.baseId, scope: baseRun.scope } } : {}),
    beforeCommit: async (t) => {
      if (chain) return chain.beforeSend(t, dataEnd);
      if (!opts.destination.durable) return;
      state = { ...state, committing: { serial: t.serial, path: t.finalPath, sha256: t.sha256, firstSeq: t.trailer.updates?.firstSeq ?? null, lastSeq: t.trailer.updates?.lastSeq ?? null, ...(t.trailer.updates ? { lastTs: t.trailer.updates.lastTs } : {}), keepUntilAck: keep } };
      await save(state);
    },
    onTape: async (t) => {
      state = { ...advance(state, t.serial, t.sha256, t.trailer.updates, keep), lastKeyId: t.label.encryption?.keyId ?? null };
      const effects = trailerEffects(t.trailer);
      if (effects.healed) delete state.sawSuspension;
      else if (effects.suspended) state.sawSuspension = true;
      await save(state);
      // The chain pins what comes after its tapes itself now.
      hold.move(BigInt(state.exportedSeq) + 1n);
      // What this tape secured is freed now, not at the end of the export: writers waiting for journal space get it.
      if (relieve) await group.purgeSecured();
    },
    ...(relieve ? { cutWhen: enoughUnderPressure } : {}),
    ...(chain?.link ? { link: chain.link } : {}),
  });
  /** The tapes counted, over every medium. */
  const tapes: WrittenTape[] = [];
  let rawBytes = 0;
  let rawBefore = 0;
  let dataEnd: bigint | null = null;
  let updateBytes = 0;
  let lastMedium: WrittenTape[] = [];
  try {
    // One pass a medium: a medium that ends (--next-media) keeps the tapes finished on it; the tape
    // it cut short is written again, whole, on the next one (a tape never spans media).
    const counted = (baseId: bigint): number => tapes.reduce((n, t) => n + (t.trailer.base?.baseId === baseId.toString() ? t.trailer.base.records : 0), 0);
    for (let medium = 1; ; medium++) {
      // A base that completed while its last records were on the tape the medium cut short cannot be
      // read again (its chunks would be newer than its completion): a new base is taken.
      if (medium > 1 && baseInfo && counted(baseInfo.baseId) < baseInfo.records) {
        baseRun = await group.beginBase({ scope: baseInfo.scope, ...listedFor, ...baseTurn });
        baseInfo = null;
      }
      const writer = newWriter();
      rawBefore = rawBytes;
      try {
        if (baseRun) {
          const run = baseRun;
          if (medium > 1) run.rewind(counted(run.baseId));
          for await (const r of run.read()) {
            await writer.add(SegmentKind.Base, r.header, encodeRecord(r.header), r.data);
            rawBytes += 64 + r.data.length;
          }
          const done = await run.complete();
          baseInfo = { baseId: run.baseId, scope: run.scope, completeSeq: done.seq, records: run.records, bytes: run.bytes };
          baseRun = undefined;
        }
        // Only records known durable leave the primary: after a power cut it must not reuse a
        // sequence number that a tape or a secondary already holds.
        const end = group.journal.writtenSeq;
        const after = BigInt(state.exportedSeq) + 1n;
        const next = medium > 1 && after > from ? after : from;
        if (next < end) await group.flush();
        if (next < end) {
          const reading = { reuse: true, to: end, ...(opts.maxUpdateBytes !== undefined ? { maxBytes: opts.maxUpdateBytes - updateBytes } : {}) };
          for await (const r of group.records(next, reading)) {
            if (r.header.seq >= end || (opts.maxUpdateBytes !== undefined && updateBytes >= opts.maxUpdateBytes)) break;
            if (opts.endUnderPressure === true && enoughUnderPressure(updateBytes)) break;
            await writer.add(SegmentKind.Update, r.header, encodeRecord({ ...r.header, dataPos: 0n }), r.data);
            rawBytes += 64 + r.data.length;
            updateBytes += 64 + r.data.length;
            dataEnd = r.header.dataPos + BigInt(r.data.length);
          }
        }
        await writer.finish({ allowEmpty: (opts.allowEmpty ?? false) && tapes.length === 0 });
        tapes.push(...writer.tapes);
        lastMedium = [...writer.tapes];
        break;
      } catch (e) {
        await writer.abort();
        tapes.push(...writer.tapes);
        const code = (e as NodeJS.ErrnoException).code;
        const full = code === 'ENOSPC' || code === 'EDQUOT';
        // A new medium that ends before a tape is finished on it would end the same way on the next.
        const next = (full || isJshipError(e, 'MEDIA_END')) && opts.nextMedia && (medium === 1 || writer.tapes.length > 0);
        if (next) {
          const problem = await opts.destination.finish?.(group.config.groupId, writer.tapes);
          if (problem) warnings.push(problem);
          try {
            await opts.nextMedia?.({ where: opts.destination.where, medium: medium + 1, counted: writer.tapes.map((t) => t.serial), nextSerial: state.nextSerial });
            continue;
          } catch (hookError) {
            if (baseRun) await baseRun.abort((hookError as Error).message).catch(() => undefined);
            if (tapes.length > 0) await group.purgeSecured().catch(() => undefined);
            throw hookError;
          }
        }
        if (baseRun) await baseRun.abort((e as Error).message).catch(() => undefined);
        if (full) throw await mediaFull(group, opts.destination.where, tapes.map((t) => t.serial), code, e);
        if (opts.nextMedia && isJshipError(e, 'MEDIA_END')) {
          if (tapes.length > 0) await group.purgeSecured().catch(() => undefined);
          throw new JshipError('MEDIA_END', `${e.message}; it ended on a new medium too: tape ${state.nextSerial} does not fit on one medium`, { hint: 'tapes never span media: export more often, or to a directory with --media-size (tapes of at most that size)', details: e.details, cause: e });
        }
        throw e;
      }
    }
  } finally {
    if (!opts.pool) await pool.close();
  }
  const journalOut = await group.purgeSecured();
  if (lastMedium.length > 0 && opts.destination.finish) {
    const problem = await opts.destination.finish(group.config.groupId, lastMedium);
    if (problem) warnings.push(problem);
  }
  const updates = tapes.filter((t) => t.trailer.updates);
  const u0 = updates[0]?.trailer.updates;
  const u1 = updates[updates.length - 1]?.trailer.updates;
  return {
    warnings,
    nothingToExport: false,
    tapes,
    records: tapes.reduce((n, t) => n + t.trailer.records, 0),
    updates: u0 && u1 ? { firstSeq: BigInt(u0.firstSeq), lastSeq: BigInt(u1.lastSeq), firstTs: BigInt(u0.firstTs), lastTs: BigInt(u1.lastTs) } : null,
    base: baseInfo,
    rawBytes,
    tapeBytes: tapes.reduce((n, t) => n + t.bytes, 0),
    journalOut,
    awaitingAck: state.pendingAcks.length > 0,
    lostBeforeExport,
    dataEnd,
  };
}

/** The chain after tape `serial` is in place; `updates` is the range of its journal records, if any. */
function advance(state: ChainState, serial: number, sha256: string, updates: { firstSeq: string; lastSeq: string; lastTs?: string } | null, keep: boolean): ChainState {
  const lastSeq = updates ? BigInt(updates.lastSeq) : null;
  const moved = lastSeq !== null && lastSeq > BigInt(state.exportedSeq);
  const exported = moved ? lastSeq : BigInt(state.exportedSeq);
  return {
    ...state,
    ...(moved && updates?.lastTs !== undefined ? { exportedTs: updates.lastTs } : {}),
    nextSerial: serial + 1,
    lastTapeSha256: sha256,
    exportedSeq: exported.toString(),
    pendingAcks: keep && updates ? [...state.pendingAcks, { serial, firstSeq: updates.firstSeq, lastSeq: updates.lastSeq }] : state.pendingAcks,
    committing: null,
  };
}

/** A crash between "about to rename tape N" and "state updated": adopt tape N if it is in place, whole. */
async function reconcile(dir: string, state: ChainState, s3?: StoreSettings): Promise<ChainState> {
  const c = state.committing;
  if (!c) return state;
  const sha = await (async () => tapeHashFile(isStoreUrl(c.path) ? (await expandTapeSources([c.path], s3))[0] ?? c.path : c.path))().catch(() => undefined);
  const next = sha === c.sha256
    ? advance(state, c.serial, c.sha256, c.firstSeq !== null && c.lastSeq !== null ? { firstSeq: c.firstSeq, lastSeq: c.lastSeq, ...(c.lastTs !== undefined ? { lastTs: c.lastTs } : {}) } : null, c.keepUntilAck)
    : { ...state, committing: null };
  await writeChainState(dir, next);
  return next;
}

/**
 * The file system of a directory or file destination filled up: the tapes
 * of this export finished before are durable and counted (what they hold is
 * purged now, as after any export); the one being written was removed.
 */
async function mediaFull(group: JournalGroup, where: string, done: number[], code: string, cause: unknown): Promise<JshipError> {
  if (done.length > 0) await group.purgeSecured().catch(() => undefined);
  const kept = done.length === 0
    ? 'no tape of this export was completed'
    : `${done.length} tape${done.length > 1 ? 's' : ''} of this export (serial${done.length > 1 ? `s ${done[0]}..${done[done.length - 1]}` : ` ${done[0]}`}) ${done.length > 1 ? 'were' : 'was'} completed and ${done.length > 1 ? 'are' : 'is'} counted in the chain`;
  return new JshipError('MEDIA_END', `${where}: no space left (${code}); ${kept}; the tape being written was removed, and nothing it held was purged`, {
    hint: 'free space there, or put in another medium, and run the same export again: it goes on after the last counted tape',
    details: { where, code, completed: done.join(',') },
    cause,
  });
}

