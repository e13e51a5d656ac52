import { constants, promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JshipError, isJshipError, rethrowAt, type ErrorCode } from '../core/errors.js';
import { decodeMarker } from '../core/marker.js';
import { RecordType } from '../core/record.js';
import { buildRecordIndex } from '../core/record-index.js';
import { BackgroundSync, DATA_FILE_MODE, SMALL_WRITE, syncDir, writeFully, writeFullySync } from '../io/files.js';
import type { KeyRing } from '../tape/crypto.js';
import { labelGeneration, type TapeLabel, type TapeTrailer } from '../tape/label.js';
import { storedTapeName, tapeName } from '../tape/tape-name.js';
import { compareLineages, epochEnd, lineageText, onLineage } from '../core/epoch.js';
import { readTape } from '../tape/tape-reader.js';
import { expandTapeSources, findTrailer, labelOf, readLabel, tapeHashFile } from '../tape/tape-file.js';
import { newHasher, tapeHashOf } from '../tape/tape-hash.js';
import { asSource, fileSource, type TapeSource } from '../tape/tape-source.js';
import { repairTape, type RepairReport } from '../tape/repair.js';
import type { StoreSettings } from '../tape/stores.js';
import { FramePool } from '../tape/frame-pool.js';
import { ZEROED_TS, keyGeneration, serialText, tapeKey, type Catalog, type MarkerRow, type SegmentRow, type TapeRow } from './catalog.js';
import { readReplicaState, writeReplicaState } from './replica-state.js';
import { Replica, type ReplicaWait } from './replica.js';
import { chainReport, type ChainReport } from './coverage.js';
import { admitLabel, decideImport, unreadable, type HeldCopies, type ReplicaIdentity } from './import-decision.js';

export type TapeOutcome =
  /** Verified to its trailer and stored. */
  | 'imported'
  /** The replica had this exact tape already: nothing changed. */
  | 'duplicate'
  /** A complete copy replaced a damaged one the replica had. */
  | 'replaced'
  /** Damaged or truncated: its verified records were kept. */
  | 'partial'
  /** Not taken at all (another group, not a tape, a conflicting serial, no key). */
  | 'refused';

export interface TapeImport {
  source: string;
  serial: number | null;
  outcome: TapeOutcome;
  message: string;
  code: ErrorCode | null;
  records: number;
  updates: { firstSeq: bigint; lastSeq: bigint } | null;
  /** For damaged tapes: what could not be kept. */
  lost: { segments: number; firstSeq: bigint | null; lastSeq: bigint | null; records: number | null } | null;
  /** The tape's hash (tape/tape-hash.ts: over its frames, as its writer computed it), when it was read whole or is held already. */
  sha256?: string;
  /** Frames (their first entries) that were damaged or missing and were rebuilt from the tape's parity. */
  repaired?: string[];
}

export interface ImportReport extends ChainReport {
  replica: string;
  created: boolean;
  tapes: TapeImport[];
  /** True when every tape was imported or already there, and nothing was refused or damaged. */
  ok: boolean;
}

export interface ImportOptions {
  keys?: KeyRing;
  /** How to reach the store for s3:// sources. */
  s3?: StoreSettings;
  /** Read tape drives and FIFOs in blocks of this size. */
  blockSize?: number;
  pool?: FramePool;
  onProgress?: (done: number, total: number) => void;
  /** Take a plaintext tape into a chain whose tapes before it are encrypted (the primary was told --allow-plaintext). */
  allowPlaintext?: boolean;
  /** The whole tape's hash as its sender computed it (asked once the tape is read): another one refuses the tape. */
  expectSha256?: () => string | undefined;
  /** Each base segment as it is read (before the tape is stored): its base and the volume bytes its records cover. */
  onBaseSegment?: (baseId: bigint, bytes: number) => void;
  /** A damaged tape is not rebuilt from its parity (set on the rebuilt copy itself). */
  noRepair?: boolean;
  /** How long to wait for the replica while another command uses it. */
  wait?: ReplicaWait;
}

/**
 * Imports tapes into a replica (creating it from the first label when the
 * directory is new or empty): each tape is copied into the store while it is
 * verified, then renamed into place and catalogued in one transaction, so a
 * crash at any point leaves a consistent catalogue and a rerun completes it.
 */
export interface ScannedTape {
  segments: SegmentRow[];
  markers: MarkerRow[];
  trailer: TapeTrailer | undefined;
  /** Where the tape ends: the end of its trailer frame (what follows is media padding: a drive's last block). */
  end: number | undefined;
  /** Why reading stopped early (a damaged or truncated tape), with the segments before it verified. */
  damage: JshipError | undefined;
}

/** Reads and verifies a whole tape into catalogue rows; damage stops it and is returned, not thrown. */
export async function scanTape(from: string | TapeSource, label: TapeLabel, opts: ImportOptions, stage: (idx: number, index: Buffer) => void, onBytes?: (c: Buffer) => Promise<void>): Promise<ScannedTape> {
  const serial = catalogKey(label);
  const src = asSource(from);
  const source = src.where;
  const segments: SegmentRow[] = [];
  const markers: MarkerRow[] = [];
  let trailer: TapeTrailer | undefined;
  let end: number | undefined;
  let damage: JshipError | undefined;
  try {
    for await (const item of readTape(src.chunks(), {
      where: source,
      ...(opts.keys ? { keys: opts.keys } : {}),
      ...(opts.pool ? { pool: opts.pool } : {}),
      ...(onBytes ? { onBytes } : {}),
      // The chunks' memory read into again (an object store's ranges): onBytes keeps nothing of a chunk.
      ...(src.giveBack ? { giveBack: src.giveBack.bind(src) } : {}),
      // Nothing of an item is kept but what is copied out of it here.
      recycle: true,
    })) {
      if (item.type === 'label') {
        // The label every decision was made on (group, serial, chain) was read first, on its own: a file
        // replaced since would be stored and catalogued under it with another tape's records.
        if (JSON.stringify(item.label) !== JSON.stringify(label)) {
          throw new JshipError('TAPE_DAMAGED', `${source} changed while it was read: its label is no longer the one read first (serial ${item.label.serial} of group ${item.label.groupId}, not serial ${label.serial} of group ${label.groupId})`, {
            hint: 'another process replaced the file meanwhile: find out which, then import it again',
          });
        }
      } else if (item.type === 'segment') {
        const r0 = item.records[0];
        segments.push({
          serial, idx: item.index, kind: item.info.kind,
          firstSeq: item.header.firstSeq, lastSeq: item.header.lastSeq, firstTs: item.header.firstTs, lastTs: item.header.lastTs,
          records: item.header.count, frameOffset: item.offset, frameLength: item.length, hash: item.info.hash,
          baseId: item.info.kind === 'base' && r0 ? r0.header.aux : null,
        });
        stage(item.index, buildRecordIndex(item.records.map((r) => r.header)));
        if (item.info.kind === 'base' && r0 && opts.onBaseSegment) opts.onBaseSegment(r0.header.aux, item.records.reduce((n, r) => n + r.header.length, 0));
        for (const r of item.records) {
          if (r.header.type !== RecordType.Marker) continue;
          const p = decodeMarker(r.data, `${source} record ${r.header.seq}`);
          markers.push({
            seq: r.header.seq, ts: r.header.timestamp, kind: p.kind,
            name: p.kind === 'restore-point' ? p.name : null,
            baseId: p.kind === 'base-started' ? r.header.seq : 'baseId' in p ? BigInt(p.baseId) : null,
            scope: p.kind === 'base-started' ? p.scope : null,
            payload: JSON.stringify(p),
            serial,
          });
        }
      } else if (item.type === 'trailer') {
        trailer = item.trailer;
        end = item.offset + item.length;
      }
    }
  } catch (e) {
    if (!isJshipError(e) || !e.code.startsWith('TAPE_')) throw e;
    damage = e;
  }
  return { segments, markers, trailer, end, damage };
}

export async function importTapes(dir: string, sources: string[], opts: ImportOptions = {}): Promise<ImportReport> {
  const files = await expandTapeSources(sources, opts.s3, opts.blockSize);
  if (files.length === 0) throw new JshipError('USAGE', 'no tapes to import', { hint: 'name tape files, directories holding *.tar.zst tapes, or an s3://BUCKET/PREFIX holding tapes' });
  const reports: TapeImport[] = [];
  const labels = new Map<TapeSource, TapeLabel>();
  // A damaged label is no reason to refuse a tape with parity: it is tried once the replica is open.
  const unlabelled = new Map<TapeSource, JshipError>();
  for (const f of files) {
    try {
      labels.set(f, await readLabel(f));
    } catch (e) {
      if (!isJshipError(e)) throw e;
      if ((await f.size().catch(() => 0)) > 0) unlabelled.set(f, e);
      else reports.push(refused(f.where, null, e));
    }
  }
  // No label read and no replica yet: the first tape whose parity rebuilds its label names the replica's group.
  const early = new Map<TapeSource, { file: string; report: RepairReport }>();
  if (!files.some((f) => labels.has(f))) {
    for (const [f] of unlabelled) {
      if (f.remote) continue;
      const file = join(tmpdir(), `jship-repair-${randomBytes(6).toString('hex')}.tar.zst`);
      const report = await repairTape(f, file).catch(() => undefined);
      if (report?.state === 'repairable') {
        early.set(f, { file, report });
        labels.set(f, await readLabel(file));
        break;
      }
      await fsp.rm(file, { force: true });
    }
  }
  try {
    return await importLabelled(dir, files, labels, unlabelled, early, reports, opts);
  } finally {
    for (const { file } of early.values()) await fsp.rm(file, { force: true });
  }
}

async function importLabelled(dir: string, files: TapeSource[], labels: Map<TapeSource, TapeLabel>, unlabelled: Map<TapeSource, JshipError>, early: Map<TapeSource, { file: string; report: RepairReport }>, reports: TapeImport[], opts: ImportOptions): Promise<ImportReport> {
  const first = files.map((f) => labels.get(f)).find((l) => l !== undefined);
  const opened = await Replica.openOrCreate(dir, async () => first && { groupId: first.groupId, volumes: first.volumes }, opts.wait ? { wait: opts.wait } : {});
  if (!opened) {
    for (const [f, e] of unlabelled) reports.push(refused(f.where, null, e));
    return { replica: dir, created: false, tapes: reports, ok: false, coverage: [], gaps: [], missingSerials: [], contiguousThrough: null };
  }
  const { replica, created } = opened;
  // One worker: decompressing is fast next to hashing and checking on this thread, and each worker costs memory.
  const pool = opts.pool ?? new FramePool({ threads: 1 });
  try {
    await cleanIncoming(replica);
    const sizes = await Promise.all(files.map(async (f) => Math.max(0, await f.size()))); // a stream's is unknown (-1)
    const total = sizes.reduce((a, b) => a + b, 0);
    let done = 0;
    const hints = chainHints(labels.values());
    for (const [i, f] of files.entries()) {
      const label = labels.get(f);
      const unreadable = unlabelled.get(f);
      const fixed = early.get(f);
      if (fixed) reports.push(await importRepaired(replica, f, fixed, { ...opts, pool }, (n) => opts.onProgress?.(done + n, total), hints));
      else if (label) reports.push(await importOne(replica, f, label, { ...opts, pool }, (n) => opts.onProgress?.(done + n, total), hints));
      else if (unreadable) reports.push(await importUnlabelled(replica, f, unreadable, { ...opts, pool }, (n) => opts.onProgress?.(done + n, total), hints));
      done += sizes[i] ?? 0;
      opts.onProgress?.(done, total);
    }
    const chain = chainReport(replica.catalog);
    const ok = reports.every((r) => r.outcome === 'imported' || r.outcome === 'duplicate' || r.outcome === 'replaced');
    return { replica: replica.dir, created, tapes: reports, ok, ...chain };
  } finally {
    if (!opts.pool) await pool.close();
    await replica.close();
  }
}

/**
 * Imports one link tape as it arrives: `chunks` is the tape's bytes, read
 * once, and `first` the first of them (the label frame, which the sender
 * writes alone). Stored, verified and catalogued like any tape.
 */
export async function importLinkStream(replica: Replica, first: Buffer, chunks: () => AsyncIterable<Buffer>, where: string, opts: { pool: FramePool; expectSha256: () => string | undefined; onBaseSegment?: (baseId: bigint, bytes: number) => void; giveBack?: (chunk: Buffer) => void }): Promise<TapeImport> {
  const label = await labelOf(first, where);
  if (!label.link) throw new JshipError('TAPE_BAD_LABEL', `${where} is not a link tape`, { hint: 'the primary sent a tape of its tape chain over the link: run the same jship release on both sites' });
  // A stream has no size to compare with and cannot be read twice: it is copied, hashed and verified in one pass.
  const { giveBack, ...rest } = opts;
  const src: TapeSource = { where, remote: true, size: async () => -1, chunks, ...(giveBack ? { giveBack } : {}) };
  return importOne(replica, src, label, rest, () => undefined);
}

/** Removes what an import killed midway left: staged record indexes and `.incoming-*` files. */
export async function cleanIncoming(replica: Replica): Promise<void> {
  replica.catalog.dropStaged();
  for (const n of await fsp.readdir(replica.tapesDir)) {
    if (n.startsWith('.incoming-')) await fsp.rm(replica.tapePath(n), { force: true });
  }
}

function refused(source: string, serial: number | null, e: JshipError): TapeImport {
  return { source, serial, outcome: 'refused', message: e.message, code: e.code, records: 0, updates: null, lost: null };
}

/** What the labels of one import's tapes say of the tapes before them: catalogue key → hashes named. */
type ChainHints = Map<number, Set<string>>;

function chainHints(labels: Iterable<TapeLabel>): ChainHints {
  const hints: ChainHints = new Map();
  for (const l of labels) {
    if (l.serial < 2 || l.prevTapeSha256 === null) continue;
    const k = catalogKey({ ...l, serial: l.serial - 1 });
    const set = hints.get(k) ?? new Set<string>();
    set.add(l.prevTapeSha256);
    hints.set(k, set);
  }
  return hints;
}

/** The catalogue key of the tape `delta` places after `label` in its chain. */
function neighbourKey(label: TapeLabel, delta: number): number {
  return catalogKey({ ...label, serial: label.serial + delta });
}

/** The meta key that remembers the first encrypted tape of a chain. */
const encryptedSince = (label: TapeLabel): string => (label.link ? 'encryptedSince:link' : 'encryptedSince:tapes');

/**
 * What a stored tape's label tells the catalogue beyond its records: an
 * encrypted tape as its chain's first encrypted one (if it comes before those
 * seen); a tape chain's label that the volumes began zero-filled (the base at
 * seq 0).
 */
export function noteLabel(cat: Catalog, label: TapeLabel): void {
  if (!label.link && label.zeroedTs !== undefined && cat.getMeta(ZEROED_TS) === undefined) cat.setMeta(ZEROED_TS, label.zeroedTs);
  if (compareLineages(label.epochs ?? [], cat.lineage()) === 'newer') cat.setLineage(label.epochs ?? []);
  if (!label.encryption) return;
  const key = Math.abs(catalogKey(label));
  const since = Number(cat.getMeta(encryptedSince(label)) ?? '0');
  if (since === 0 || key < since) cat.setMeta(encryptedSince(label), String(key));
}

/**
 * Why a tape may not join this replica's history, before its records are
 * read: it descends from another promotion than the one the replica
 * follows; or it is of a newer epoch, but the replica holds records the old
 * primary wrote after that epoch's takeover point (they are not the new
 * primary's history: the replica must not mix the two).
 */
function lineageRefusal(cat: Catalog, label: TapeLabel, source: string): JshipError | null {
  const mine = cat.lineage();
  const theirs = label.epochs ?? [];
  const how = compareLineages(theirs, mine);
  if (how === 'forked') {
    return new JshipError('TAPE_DIVERGED', `${source} is of ${lineageText(theirs)}; this replica follows ${lineageText(mine)}: the two descend from different promotions`, {
      hint: 'two sites were promoted, or one at another point: only one of them is the group\'s primary. Import the other site\'s tapes into a new replica. Nothing was changed',
    });
  }
  // A tape of a later epoch, into a replica of the same or an earlier one: everything held must be on its lineage.
  if (how === 'older' || theirs.length === 0) return null;
  const off = cat.tapes().find((t) => t.lastSeq !== null && !onLineage(theirs, keyGeneration(t.serial), t.lastSeq));
  if (!off || off.lastSeq === null) return null;
  const g = keyGeneration(off.serial);
  return new JshipError('REPLICA_DIVERGED', `${source} is of ${lineageText(theirs)}, whose epoch ${g + 1} begins at seq ${epochEnd(theirs, g)}; this replica holds records of epoch ${g} up to seq ${off.lastSeq} (${off.file}), written by the old primary after that takeover point`, {
    hint: 'those records were never on the new primary: this replica cannot follow it. Follow the new primary with a new replica (its first export with --base), and keep this one for the old primary\'s history. Nothing was changed',
  });
}

/** Why the records a tape of an older epoch holds may not join the replica: some are after the next epoch began (they diverge). */
function divergedRecords(cat: Catalog, label: TapeLabel, segments: readonly SegmentRow[], source: string): JshipError | null {
  const mine = cat.lineage();
  const g = labelGeneration(label);
  const end = epochEnd(mine, g);
  const last = segments.filter((x) => x.kind === 'update').pop()?.lastSeq;
  if (end === null || last === undefined || last < end) return null;
  return new JshipError('TAPE_DIVERGED', `${source} holds records of epoch ${g} up to seq ${last}, but epoch ${g + 1} of this group began at seq ${end}: the records from ${end} on were written by the old primary after the takeover`, {
    hint: 'they are not the group\'s history any more (the promoted site never had them); keep the tape for the old primary\'s records (jship restore can read it in a replica of its own). Nothing was changed',
  });
}

/**
 * The point digests a complete tape's trailer carries (the primary's, for
 * the markers it holds): kept for restores to prove their bytes. The first
 * one a replica holds for a point stays: a later tape cannot replace it.
 */
export function noteDigests(cat: Catalog, trailer: TapeTrailer | undefined): void {
  for (const d of trailer?.digests ?? []) if (!cat.digest(BigInt(d.seq))) cat.setDigest(d);
}

/** The replica's copies around a tape's place in its chain. */
function heldCopies(cat: Catalog, label: TapeLabel, key: number): HeldCopies {
  const before = cat.tapes().filter((t) => (t.serial < 0) === !!label.link && Math.abs(t.serial) < Math.abs(key)).sort((a, b) => Math.abs(b.serial) - Math.abs(a.serial))[0];
  return {
    same: cat.tape(key),
    prev: label.serial > 1 ? cat.tape(neighbourKey(label, -1)) : undefined,
    next: cat.tape(neighbourKey(label, 1)),
    before,
  };
}

/**
 * Imports one labelled tape: admitted by its label, copied into the store
 * while it is read and verified, then stored (renamed into place, rows
 * catalogued) as import-decision.ts decides.
 */
async function importOne(replica: Replica, src: TapeSource, label: TapeLabel, opts: ImportOptions, progress: (n: number) => void, hints: ChainHints = new Map()): Promise<TapeImport> {
  const source = src.where;
  const cat = replica.catalog;
  const cfg = replica.config;
  const key = catalogKey(label);
  const held = heldCopies(cat, label, key);
  const me: ReplicaIdentity = {
    groupId: cfg.groupId,
    volumes: cfg.volumes,
    linkName: cfg.linkName,
    newestKey: newestKey(replica),
    encryptedSince: Number(cat.getMeta(encryptedSince(label)) ?? '0'),
  };
  const refusal = admitLabel(source, label, key, me, held, lineageRefusal(cat, label, source), opts.allowPlaintext ?? false);
  if (refusal) return refused(source, label.serial, refusal);
  const linkName = label.link ? cfg.linkName ?? label.link.secondary : undefined;
  const what = `${label.link ? 'link ' : ''}tape ${serialText(key)}`;
  const existing = held.same;
  const size = await src.size();
  if (existing && existing.status === 'complete' && existing.bytes === size && (await sameTape(replica, existing, src, label))) {
    return { source, serial: label.serial, outcome: 'duplicate', message: `${what} is already in the replica: nothing changed`, code: null, records: existing.records, updates: range(existing), lost: null, sha256: existing.sha256 };
  }
  const stage = randomBytes(6).toString('hex');
  const tmp = replica.tapePath(`.incoming-${stage}`);
  const h = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, DATA_FILE_MODE);
  // The copy is written back while the tape is verified: the sync that ends it has only the last of it left.
  const syncs = new BackgroundSync(h);
  const hash = newHasher(tapeHashOf(label.version));
  let pos = 0;
  let closed = false;
  /** Stores the verified copy: the file into place, what the label says into replica.json, the rows into the catalogue. */
  const store = async (file: string, status: 'complete' | 'partial', problem: string | null, sha256: string, scan: { segments: SegmentRow[]; markers: MarkerRow[]; trailer: TapeTrailer | undefined }): Promise<string | null> => {
    // Volumes grow (jship scan adopts a grown file): the replica follows the largest size of a verified tape.
    if (label.volumes.some((v, i) => v.size > (cfg.volumes[i]?.size ?? 0)) || (linkName !== undefined && cfg.linkName === undefined)) {
      cfg.volumes = cfg.volumes.map((v, i) => ({ name: v.name, size: Math.max(v.size, label.volumes[i]?.size ?? 0) }));
      if (linkName !== undefined) cfg.linkName = linkName;
      await replica.saveConfig();
    }
    const invalidated = existing ? await invalidateDiverged(replica, existing, scan.segments) : null;
    cat.putTape(tapeRow(label, file, sha256, pos, status, problem, scan.segments, scan.trailer), scan.segments, scan.markers, stage);
    noteLabel(cat, label);
    if (status === 'complete') noteDigests(cat, scan.trailer);
    if (existing && existing.file !== file) await fsp.rm(replica.tapePath(existing.file), { force: true });
    return invalidated;
  };
  // A failure of the copy (a full disk) names where the copy goes.
  const named = rethrowAt(replica.tapesDir);
  const closeSynced = async (): Promise<void> => {
    await syncs.settle().catch(named);
    await h.sync().catch(named);
    await h.close();
    closed = true;
  };
  try {
    const scanned = await scanTape(src, label, opts, (idx, index) => cat.stageIndex(stage, idx, index), async (c) => {
      hash.update(c);
      await copyChunk(src, h, c, pos).catch(named);
      pos += c.length;
      syncs.wrote(c.length);
      progress(pos);
    });
    const { damage } = scanned;
    let sha256 = hash.digest();
    if (!damage && scanned.end !== undefined && scanned.end < pos) {
      // The same tape is the same tape: padding after its trailer (a drive's last block, zeros) is not
      // kept, so the stored copy and its hash are the tape as written, whatever medium carried it.
      await h.truncate(scanned.end);
      pos = scanned.end;
      sha256 = await tapeHashFile(tmp, label.version);
    }
    if (damage && !opts.noRepair && !unreadable(damage, scanned.segments.length)) {
      // A tape with parity is rebuilt, byte for byte, when its damage is within the parity; then imported as it was written.
      const fixed = await repairCopy(replica, src, stage);
      if (fixed) {
        await syncs.stop();
        await h.close();
        closed = true;
        try {
          return await importRepaired(replica, src, fixed, opts, progress, hints);
        } finally {
          await fsp.rm(fixed.file, { force: true });
        }
      }
    }
    // Kept segments of a damaged tape are checked against every hash it carries: its trailer's too, when it can still be found.
    const kept = damage ? keepListed(scanned, label, await findTrailer(src).catch(() => undefined)) : { ...scanned, cut: null, own: undefined };
    const { segments, markers } = kept;
    const records = segments.reduce((n, x) => n + x.records, 0);
    const updates = segments.filter((x) => x.kind === 'update');
    const tapeUpdates = updates.length > 0 ? { firstSeq: (updates[0] as SegmentRow).firstSeq, lastSeq: (updates[updates.length - 1] as SegmentRow).lastSeq } : null;
    const decision = decideImport(source, what, label, {
      damage,
      sha256,
      segments: segments.length,
      records,
      diverged: divergedRecords(cat, label, segments, source),
      namedBy: hints.get(key) ?? new Set(),
      expected: damage ? undefined : opts.expectSha256?.(),
    }, held);
    if (damage) {
      const lost = describeLoss(kept.own, segments);
      const keptText = tapeUpdates ? `records ${tapeUpdates.firstSeq}..${tapeUpdates.lastSeq} kept` : `${records} records kept`;
      const message = `${damage.message}; ${segments.length} segments (${records} records) verified${kept.cut ? ` (${kept.cut})` : ''}, ${keptText}${lost.text}`;
      switch (decision.outcome) {
        case 'duplicate':
          return { source, serial: label.serial, outcome: 'duplicate', message: `${message}; the replica already holds ${existing?.status === 'complete' ? 'a complete copy' : 'as much'} of ${what}: nothing changed`, code: damage.code, records, updates: tapeUpdates, lost: null };
        case 'refused':
          return decision.error === damage && !unreadable(damage, scanned.segments.length) ? { ...refused(source, label.serial, damage), message } : refused(source, label.serial, decision.error);
        default: {
          const file = storedTapeName({ link: !!label.link, partial: true, serial: label.serial, generation: labelGeneration(label), name: '' });
          await closeSynced();
          await fsp.rename(tmp, replica.tapePath(file));
          await syncDir(replica.tapesDir);
          const invalidated = await store(file, 'partial', damage.message, sha256, { segments, markers, trailer: scanned.trailer });
          return { source, serial: label.serial, outcome: 'partial', message: `${message}${invalidated ? `; ${invalidated}` : ''}`, code: damage.code, records, updates: tapeUpdates, lost: lost.lost };
        }
      }
    }
    if (decision.outcome === 'refused') return refused(source, label.serial, decision.error);
    if (decision.outcome === 'duplicate') return { source, serial: label.serial, outcome: 'duplicate', message: `${what} is already in the replica: nothing changed`, code: null, records, updates: tapeUpdates, lost: null, sha256 };
    const baseSeg = segments.find((x) => x.kind === 'base');
    const file = storedTapeName({ link: !!label.link, partial: false, serial: label.serial, generation: labelGeneration(label), name: tapeName(label.serial, tapeUpdates, baseSeg?.baseId ?? null, labelGeneration(label)) });
    await closeSynced();
    const finalPath = replica.tapePath(file);
    if (existing && existing.file === file) {
      await fsp.rename(tmp, finalPath);
    } else {
      try {
        await fsp.link(tmp, finalPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        // Left by an import that was killed before it catalogued the tape: keep it if it is this very tape.
        if ((await tapeHashFile(finalPath, label.version)) !== sha256) {
          return refused(source, label.serial, new JshipError('TAPE_CONFLICT', `${finalPath} exists and is not this tape`, { hint: 'move the stray file away, then import again' }));
        }
      }
    }
    await fsp.rm(tmp, { force: true });
    await syncDir(replica.tapesDir);
    const invalidated = await store(file, 'complete', null, sha256, scanned);
    const supersedes = decision.outcome === 'replaced' && decision.supersedes ? ` (replaced ${existing?.file}: the label of tape ${label.serial + 1} names this copy, not the held one)` : '';
    return {
      source, serial: label.serial, outcome: existing ? 'replaced' : 'imported',
      message: `${what}: ${records} records${tapeUpdates ? `, seq ${tapeUpdates.firstSeq}..${tapeUpdates.lastSeq}` : ''}${existing ? supersedes || ' (replaced the damaged copy)' : ''}${invalidated ? `; ${invalidated}` : ''}`,
      code: null, records, updates: tapeUpdates, lost: null, sha256,
    };
  } finally {
    // Every step on its own: on a full disk the catalogue may refuse even this delete (the next import drops what is left).
    if (!closed) {
      await syncs.stop();
      await h.close().catch(() => undefined);
    }
    await fsp.rm(tmp, { force: true });
    try {
      cat.dropStaged(stage);
    } catch {
      // dropped by the next import's cleanIncoming
    }
  }
}

/** A tape whose label could not be read: rebuilt from its parity when it has some (the label is in its first group), else refused. */
async function importUnlabelled(replica: Replica, src: TapeSource, why: JshipError, opts: ImportOptions, progress: (n: number) => void, hints: ChainHints): Promise<TapeImport> {
  const fixed = await repairCopy(replica, src, randomBytes(6).toString('hex'));
  if (!fixed) return refused(src.where, null, why);
  try {
    return await importRepaired(replica, src, fixed, opts, progress, hints);
  } finally {
    await fsp.rm(fixed.file, { force: true });
  }
}

/**
 * Writes a chunk of a tape into its copy: a remote one (an object store's
 * range, a stream, a link's tape) in SMALL_WRITE pieces on this thread, as
 * rclone does; a local file's on the thread pool as before (small writes
 * not measured there).
 */
async function copyChunk(src: TapeSource, h: fsp.FileHandle, c: Buffer, at: number): Promise<void> {
  if (src.remote) writeFullySync(h.fd, c, at, SMALL_WRITE);
  else await writeFully(h, c, at);
}

/** Imports the rebuilt copy of a tape, reported as the tape it was given as. */
async function importRepaired(replica: Replica, src: TapeSource, fixed: { file: string; report: RepairReport }, opts: ImportOptions, progress: (n: number) => void, hints: ChainHints): Promise<TapeImport> {
  const r = await importOne(replica, fileSource(fixed.file), await readLabel(fixed.file), { ...opts, noRepair: true }, progress, hints);
  return { ...r, source: src.where, message: `${r.message}; ${repairedText(fixed.report)}`, repaired: fixed.report.rebuilt };
}

const repairedText = (r: RepairReport): string => `${r.rebuilt.length} damaged or missing frame${r.rebuilt.length > 1 ? 's' : ''} rebuilt from its parity (${r.rebuilt.join(', ')})`;

/**
 * A damaged tape's copy rebuilt from its parity, in the replica's tapes
 * directory (a hidden .incoming- file: removed by the caller, or by the next
 * import's clean-up), or null when the tape has no parity, its damage is
 * beyond it, or it was read from a stream (a drive or pipe: read once —
 * copy it to a file with dd, then import the file).
 */
async function repairCopy(replica: Replica, src: TapeSource, stage: string): Promise<{ file: string; report: RepairReport } | null> {
  if ((await src.size()) <= 0) return null;
  const file = replica.tapePath(`.incoming-${stage}-repaired`);
  let local = src;
  const whole = replica.tapePath(`.incoming-${stage}-whole`);
  try {
    if (src.remote) {
      // An object in a store: read once more, whole, to a local file to work on.
      const w = await fsp.open(whole, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
      try {
        let at = 0;
        for await (const c of src.chunks()) {
          await copyChunk(src, w, c, at).catch(rethrowAt(replica.tapesDir));
          at += c.length;
          src.giveBack?.(c);
        }
      } finally {
        await w.close();
      }
      local = fileSource(whole);
    }
    const report = await repairTape(local, file).catch(rethrowAt(replica.tapesDir));
    return report.state === 'repairable' ? { file, report } : null;
  } finally {
    await fsp.rm(whole, { force: true });
  }
}

/**
 * The segments of a damaged tape that every hash it carries vouches for:
 * those before the damage, and, when its trailer was found, only as many as
 * match the trailer's list (name and hash) in order. Markers go with
 * their segments.
 */
export function keepListed(scan: ScannedTape, label: TapeLabel, found: TapeTrailer | undefined): { segments: SegmentRow[]; markers: MarkerRow[]; cut: string | null; own: TapeTrailer | undefined } {
  // A trailer found near the end counts only if it is this tape's.
  const trailer = found && found.serial === label.serial && found.mediaSet.id === label.mediaSet.id ? found : undefined;
  if (!trailer) return { segments: scan.segments, markers: scan.markers, cut: null, own: undefined };
  let n = 0;
  while (n < scan.segments.length && trailer.segments[n]?.hash === scan.segments[n]?.hash) n++;
  if (n === scan.segments.length) return { segments: scan.segments, markers: scan.markers, cut: null, own: trailer };
  const segments = scan.segments.slice(0, n);
  const held = (seq: bigint): boolean => segments.some((x) => x.kind === 'update' && x.firstSeq <= seq && seq <= x.lastSeq);
  return { segments, markers: scan.markers.filter((m) => held(m.seq)), cut: `segment ${n + 1} on differs from the trailer's list`, own: trailer };
}

/**
 * When a copy of a tape replaces another, records the SVOLs took from the
 * old copy may differ from the new one's: then the SVOLs can no longer be
 * brought forward from where they are, and are rebuilt from the base at
 * their next restore. Returns what was done, or null.
 */
async function invalidateDiverged(replica: Replica, old: TapeRow, segments: SegmentRow[]): Promise<string | null> {
  const before = replica.catalog.segments(old.serial);
  const i = before.findIndex((x, k) => x.hash !== segments[k]?.hash);
  if (i < 0) return null;
  const from = before.slice(i).reduce<bigint | null>((m, x) => (x.kind === 'update' && (m === null || x.firstSeq < m) ? x.firstSeq : m), null);
  const state = await readReplicaState(replica.dir);
  const svol = BigInt(state.svol.restoredSeq);
  const touched = state.svol.inProgress !== null || (svol > 0n && (from === null || svol >= from));
  if (!touched) return null;
  state.svol = { restoredSeq: '0', restoredTs: null, inProgress: null };
  await writeReplicaState(replica.dir, state);
  return `the SVOLs held records of the replaced copy that differ from this one${from !== null ? ` (from seq ${from})` : ''}: they are rebuilt from the base at the next restore`;
}

/**
 * Whether a source holds the tape the replica has. A local file is hashed;
 * a remote object is not downloaded for that: the same size and the same
 * label (group, serial, media set id, previous tape's hash, creation
 * time, host) identify it, so importing a whole prefix again reads only
 * the first MiB of each tape already held.
 */
async function sameTape(replica: Replica, existing: TapeRow, src: TapeSource, label: TapeLabel): Promise<boolean> {
  if (!src.remote) return (await tapeHashFile(src, label.version)) === existing.sha256;
  const held = await readLabel(replica.tapePath(existing.file)).catch(() => undefined);
  return held !== undefined && JSON.stringify(held) === JSON.stringify(label);
}

function newestKey(replica: Replica): number {
  return replica.catalog.tapes().reduce((m, t) => Math.max(m, t.serial), 0);
}

/**
 * The tape's key in the catalogue: its serial for the tape chain; minus its
 * serial for a link secondary's chain (serials of their own: docs/FORMAT.md).
 */
export function catalogKey(label: TapeLabel): number {
  return tapeKey(label.link ? 'link' : 'tapes', label.serial, labelGeneration(label));
}

function range(t: TapeRow): { firstSeq: bigint; lastSeq: bigint } | null {
  return t.firstSeq !== null && t.lastSeq !== null ? { firstSeq: t.firstSeq, lastSeq: t.lastSeq } : null;
}

export function tapeRow(label: TapeLabel, file: string, sha256: string, bytes: number, status: 'complete' | 'partial', problem: string | null, segments: SegmentRow[], trailer: TapeTrailer | undefined): TapeRow {
  const updates = segments.filter((s) => s.kind === 'update');
  const u0 = updates[0];
  const u1 = updates[updates.length - 1];
  const base = segments.find((s) => s.kind === 'base');
  return {
    serial: catalogKey(label),
    file,
    sha256,
    bytes,
    mediaSet: label.mediaSet.id,
    mediaIndex: label.mediaSet.index,
    mediaLast: trailer ? trailer.mediaSet.last : null,
    prevSha256: label.prevTapeSha256,
    keyId: label.encryption?.keyId ?? null,
    status,
    problem,
    records: segments.reduce((n, s) => n + s.records, 0),
    firstSeq: u0?.firstSeq ?? null,
    lastSeq: u1?.lastSeq ?? null,
    firstTs: u0?.firstTs ?? null,
    lastTs: u1?.lastTs ?? null,
    baseId: base?.baseId ?? null,
    createdAt: label.createdAt,
    importedAt: new Date().toISOString(),
  };
}

/** What a damaged tape lost, from its trailer if one could still be found near its end. */
function describeLoss(trailer: TapeTrailer | undefined, kept: SegmentRow[]): { text: string; lost: TapeImport['lost'] } {
  if (!trailer) {
    const last = kept.filter((s) => s.kind === 'update').pop();
    return { text: `; its trailer is unreadable, so what followed ${last ? `seq ${last.lastSeq}` : 'the verified part'} is unknown`, lost: { segments: 0, firstSeq: last ? last.lastSeq + 1n : null, lastSeq: null, records: null } };
  }
  const missing = trailer.segments.slice(kept.length);
  const upd = missing.filter((s) => s.kind === 'update');
  const records = missing.reduce((n, s) => n + s.records, 0);
  const firstSeq = upd[0] ? BigInt(upd[0].firstSeq) : null;
  const lastSeq = upd.length > 0 ? BigInt((upd[upd.length - 1] as { lastSeq: string }).lastSeq) : null;
  const what = firstSeq !== null ? `records ${firstSeq}..${lastSeq} (${records} records in ${missing.length} segments)` : `${records} base records in ${missing.length} segments`;
  return { text: `; lost: ${what}, per its trailer`, lost: { segments: missing.length, firstSeq, lastSeq, records } };
}
