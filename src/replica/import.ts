import { constants, promises as fsp } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { JshipError, isJshipError, type ErrorCode } from '../core/errors.js';
import { decodeMarker } from '../core/marker.js';
import { RecordType } from '../core/record.js';
import { buildRecordIndex } from '../core/record-index.js';
import { syncDir, writeFully } from '../io/files.js';
import type { TapeKey } from '../tape/crypto.js';
import { tapeFileName, type TapeLabel, type TapeTrailer } from '../tape/label.js';
import { readTape } from '../tape/tape-reader.js';
import { expandTapeSources, findTrailer, labelOf, readLabel, sha256File } from '../tape/tape-file.js';
import { asSource, type TapeSource } from '../tape/tape-source.js';
import type { S3Settings } from '../s3/s3-store.js';
import { FramePool } from '../tape/frame-pool.js';
import type { MarkerRow, SegmentRow, TapeRow } from './catalog.js';
import { Replica } from './replica.js';
import { chainReport, type ChainReport } from './coverage.js';

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
}

export interface ImportReport extends ChainReport {
  replica: string;
  created: boolean;
  tapes: TapeImport[];
  /** True when every tape was imported or already there, and nothing was refused or damaged. */
  ok: boolean;
}

export interface ImportOptions {
  key?: TapeKey;
  /** How to reach the store for s3:// sources. */
  s3?: S3Settings;
  pool?: FramePool;
  onProgress?: (done: number, total: number) => void;
  /** The whole tape's SHA-256 as its sender computed it (asked once the tape is read): another one refuses the tape. */
  expectSha256?: () => string | undefined;
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
  /** Why reading stopped early (a damaged or truncated tape), with the segments before it verified. */
  damage: JshipError | undefined;
}

/** Reads and verifies a whole tape into catalogue rows; damage stops it and is returned, not thrown. */
export async function scanTape(from: string | TapeSource, serial: number, opts: ImportOptions, stage: (idx: number, index: Buffer) => void, onBytes?: (c: Buffer) => Promise<void>): Promise<ScannedTape> {
  const src = asSource(from);
  const source = src.where;
  const segments: SegmentRow[] = [];
  const markers: MarkerRow[] = [];
  let trailer: TapeTrailer | undefined;
  let damage: JshipError | undefined;
  try {
    for await (const item of readTape(src.chunks(), {
      where: source,
      ...(opts.key ? { key: opts.key } : {}),
      ...(opts.pool ? { pool: opts.pool } : {}),
      ...(onBytes ? { onBytes } : {}),
    })) {
      if (item.type === 'segment') {
        const r0 = item.records[0];
        segments.push({
          serial, idx: item.index, kind: item.info.kind,
          firstSeq: item.header.firstSeq, lastSeq: item.header.lastSeq, firstTs: item.header.firstTs, lastTs: item.header.lastTs,
          records: item.header.count, frameOffset: item.offset, frameLength: item.length, sha256: item.info.sha256,
          baseId: item.info.kind === 'base' && r0 ? r0.header.aux : null,
        });
        stage(item.index, buildRecordIndex(item.records.map((r) => r.header)));
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
      }
    }
  } catch (e) {
    if (!isJshipError(e) || !e.code.startsWith('TAPE_')) throw e;
    damage = e;
  }
  return { segments, markers, trailer, damage };
}

export async function importTapes(dir: string, sources: string[], opts: ImportOptions = {}): Promise<ImportReport> {
  const files = await expandTapeSources(sources, opts.s3);
  if (files.length === 0) throw new JshipError('USAGE', 'no tapes to import', { hint: 'name tape files, directories holding *.tar.zst tapes, or an s3://BUCKET/PREFIX holding tapes' });
  const reports: TapeImport[] = [];
  const labels = new Map<TapeSource, TapeLabel>();
  for (const f of files) {
    try {
      labels.set(f, await readLabel(f));
    } catch (e) {
      if (!isJshipError(e)) throw e;
      reports.push(refused(f.where, null, e));
    }
  }
  const first = files.map((f) => labels.get(f)).find((l) => l !== undefined);
  const opened = await Replica.openOrCreate(dir, async () => first && { groupId: first.groupId, volumes: first.volumes });
  if (!opened) {
    return { replica: dir, created: false, tapes: reports, ok: false, coverage: [], gaps: [], missingSerials: [], contiguousThrough: null };
  }
  const { replica, created } = opened;
  // One worker: decompressing is fast next to hashing and checking on this thread, and each worker costs memory.
  const pool = opts.pool ?? new FramePool({ threads: 1 });
  try {
    await cleanIncoming(replica);
    const sizes = await Promise.all(files.map((f) => f.size()));
    const total = sizes.reduce((a, b) => a + b, 0);
    let done = 0;
    for (const [i, f] of files.entries()) {
      const label = labels.get(f);
      if (label) reports.push(await importOne(replica, f, label, { ...opts, pool }, (n) => opts.onProgress?.(done + n, total)));
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
export async function importLinkStream(replica: Replica, first: Buffer, chunks: () => AsyncIterable<Buffer>, where: string, opts: { pool: FramePool; expectSha256: () => string | undefined }): Promise<TapeImport> {
  const label = await labelOf(first, where);
  if (!label.link) throw new JshipError('TAPE_BAD_LABEL', `${where} is not a link tape`, { hint: 'the primary sent a tape of its tape chain over the link: run the same jship release on both sites' });
  // A stream has no size to compare with and cannot be read twice: it is copied, hashed and verified in one pass.
  const src: TapeSource = { where, remote: true, size: async () => -1, chunks };
  return importOne(replica, src, label, opts, () => undefined);
}

async function cleanIncoming(replica: Replica): Promise<void> {
  replica.catalog.dropStaged();
  for (const n of await fsp.readdir(replica.tapesDir)) {
    if (n.startsWith('.incoming-')) await fsp.rm(replica.tapePath(n), { force: true });
  }
}

function refused(source: string, serial: number | null, e: JshipError): TapeImport {
  return { source, serial, outcome: 'refused', message: e.message, code: e.code, records: 0, updates: null, lost: null };
}

async function importOne(replica: Replica, src: TapeSource, label: TapeLabel, opts: ImportOptions, progress: (n: number) => void): Promise<TapeImport> {
  const source = src.where;
  const cat = replica.catalog;
  const cfg = replica.config;
  if (label.groupId !== cfg.groupId) {
    return refused(source, label.serial, new JshipError('TAPE_FOREIGN', `${source} belongs to group ${label.groupId}; this replica holds group ${cfg.groupId}`, {
      hint: 'import it into a replica of its own group (a new directory)',
    }));
  }
  const sameNames = label.volumes.length === cfg.volumes.length && label.volumes.every((v, i) => v.name === cfg.volumes[i]?.name);
  if (!sameNames || label.volumes.some((v, i) => v.size < (cfg.volumes[i]?.size ?? 0) && label.serial > newestSerial(replica))) {
    return refused(source, label.serial, new JshipError('TAPE_FOREIGN', `${source}: its volumes (${label.volumes.map((v) => `${v.name} ${v.size}`).join(', ')}) differ from the replica's`, {
      hint: 'the group was re-created with other volumes: use a new replica',
    }));
  }
  // Volumes grow (jship scan adopts a grown file): the replica follows the largest size seen.
  if (label.volumes.some((v, i) => v.size > (cfg.volumes[i]?.size ?? 0))) {
    cfg.volumes = cfg.volumes.map((v, i) => ({ name: v.name, size: Math.max(v.size, label.volumes[i]?.size ?? 0) }));
    await replica.saveConfig();
  }
  if (label.link) {
    const mine = cfg.linkName ?? label.link.secondary;
    if (label.link.secondary !== mine) {
      return refused(source, label.serial, new JshipError('TAPE_FOREIGN', `${source} is link tape ${label.serial} of secondary "${label.link.secondary}"; this replica is secondary "${mine}"`, {
        hint: 'link tapes belong to the replica they were sent to: import the tape chain\'s tapes instead',
      }));
    }
    if (cfg.linkName === undefined) {
      cfg.linkName = mine;
      await replica.saveConfig();
    }
  }
  const key = catalogKey(label);
  const existing = cat.tape(key);
  const size = await src.size();
  if (existing && existing.status === 'complete' && existing.bytes === size && (await sameTape(replica, existing, src, label))) {
    return { source, serial: label.serial, outcome: 'duplicate', message: `tape ${label.serial} is already in the replica: nothing changed`, code: null, records: existing.records, updates: range(existing), lost: null };
  }
  const stage = randomBytes(6).toString('hex');
  const tmp = replica.tapePath(`.incoming-${stage}`);
  const h = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  const hash = createHash('sha256');
  let pos = 0;
  let closed = false;
  try {
    const { segments, markers, trailer, damage } = await scanTape(src, key, opts, (idx, index) => cat.stageIndex(stage, idx, index), async (c) => {
      hash.update(c);
      await writeFully(h, c, pos);
      pos += c.length;
      progress(pos);
    });
    if (damage && (damage.code === 'TAPE_KEY_REQUIRED' || damage.code === 'TAPE_BAD_LABEL' || (damage.code === 'TAPE_AUTH_FAILED' && segments.length === 0))) {
      return refused(source, label.serial, damage);
    }
    const sha256 = hash.digest('hex');
    const updates = segments.filter((s) => s.kind === 'update');
    const records = segments.reduce((n, s) => n + s.records, 0);
    const tapeUpdates = updates.length > 0 ? { firstSeq: (updates[0] as SegmentRow).firstSeq, lastSeq: (updates[updates.length - 1] as SegmentRow).lastSeq } : null;
    if (damage) {
      const lost = await describeLoss(src, segments);
      const keptText = tapeUpdates ? `records ${tapeUpdates.firstSeq}..${tapeUpdates.lastSeq} kept` : `${records} records kept`;
      const message = `${damage.message}; ${segments.length} segments (${records} records) verified, ${keptText}${lost.text}`;
      if (existing && (existing.status === 'complete' || existing.records >= records)) {
        return { source, serial: label.serial, outcome: 'duplicate', message: `${message}; the replica already holds ${existing.status === 'complete' ? 'a complete copy' : 'as much'} of tape ${label.serial}: nothing changed`, code: damage.code, records, updates: tapeUpdates, lost: null };
      }
      if (segments.length === 0) return { ...refused(source, label.serial, damage), message };
      const file = label.link ? `jship-link-${String(label.serial).padStart(6, '0')}-partial.tar.zst` : `jship-${String(label.serial).padStart(6, '0')}-partial.tar.zst`;
      await h.sync();
      await h.close();
      closed = true;
      await fsp.rename(tmp, replica.tapePath(file));
      await syncDir(replica.tapesDir);
      cat.putTape(tapeRow(label, file, sha256, pos, 'partial', damage.message, segments, trailer), segments, markers, stage);
      if (existing && existing.file !== file) await fsp.rm(replica.tapePath(existing.file), { force: true });
      return { source, serial: label.serial, outcome: 'partial', message, code: damage.code, records, updates: tapeUpdates, lost: lost.lost };
    }
    if (existing && existing.status === 'complete') {
      if (existing.sha256 === sha256) return { source, serial: label.serial, outcome: 'duplicate', message: `tape ${label.serial} is already in the replica: nothing changed`, code: null, records, updates: tapeUpdates, lost: null };
      return refused(source, label.serial, new JshipError('TAPE_CONFLICT', `${source} is tape ${label.serial}, but the replica holds a different tape ${label.serial} (${existing.file})`, {
        hint: 'two different exports used the same serial: find out which is right; nothing was changed',
      }));
    }
    const seqs = segments.flatMap((s) => [s.firstSeq, s.lastSeq]);
    const lo = seqs.reduce((a, b) => (b < a ? b : a), seqs[0] ?? 0n);
    const hi = seqs.reduce((a, b) => (b > a ? b : a), seqs[0] ?? 0n);
    const file = `${label.link ? 'jship-link-' : 'jship-'}${tapeFileName(label.serial, lo, hi).slice('jship-'.length)}`;
    const expected = opts.expectSha256?.();
    if (expected !== undefined && expected !== sha256) {
      return refused(source, label.serial, new JshipError('TAPE_DAMAGED', `${source} arrived with SHA-256 ${sha256.slice(0, 12)}…, its sender computed ${expected.slice(0, 12)}…`, { hint: 'it was damaged on its way and not stored; it is sent again' }));
    }
    await h.sync();
    await h.close();
    closed = true;
    const finalPath = replica.tapePath(file);
    try {
      await fsp.link(tmp, finalPath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // Left by an import that was killed before it catalogued the tape: keep it if it is this very tape.
      if ((await sha256File(finalPath)) !== sha256) {
        return refused(source, label.serial, new JshipError('TAPE_CONFLICT', `${finalPath} exists and is not this tape`, { hint: 'move the stray file away, then import again' }));
      }
    }
    await fsp.rm(tmp, { force: true });
    await syncDir(replica.tapesDir);
    cat.putTape(tapeRow(label, file, sha256, pos, 'complete', null, segments, trailer), segments, markers, stage);
    if (existing && existing.file !== file) await fsp.rm(replica.tapePath(existing.file), { force: true });
    return {
      source, serial: label.serial, outcome: existing ? 'replaced' : 'imported',
      message: `tape ${label.serial}: ${records} records${tapeUpdates ? `, seq ${tapeUpdates.firstSeq}..${tapeUpdates.lastSeq}` : ''}${existing ? ' (replaced the damaged copy)' : ''}`,
      code: null, records, updates: tapeUpdates, lost: null,
    };
  } finally {
    cat.dropStaged(stage);
    if (!closed) await h.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
  }
}

/**
 * Whether a source holds the tape the replica has. A local file is hashed;
 * a remote object is not downloaded for that: the same size and the same
 * label (group, serial, media set id, previous tape's SHA-256, creation
 * time, host) identify it, so importing a whole prefix again reads only
 * the first MiB of each tape already held.
 */
async function sameTape(replica: Replica, existing: TapeRow, src: TapeSource, label: TapeLabel): Promise<boolean> {
  if (!src.remote) return (await sha256File(src)) === existing.sha256;
  const held = await readLabel(replica.tapePath(existing.file)).catch(() => undefined);
  return held !== undefined && JSON.stringify(held) === JSON.stringify(label);
}

function newestSerial(replica: Replica): number {
  return replica.catalog.tapes().reduce((m, t) => Math.max(m, t.serial), 0);
}

/**
 * The tape's key in the catalogue: its serial for the tape chain; minus its
 * serial for a link secondary's chain (serials of their own: docs/FORMAT.md).
 */
export function catalogKey(label: TapeLabel): number {
  return label.link ? -label.serial : label.serial;
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

/** What a damaged tape lost, from its trailer if one can still be found near its end. */
async function describeLoss(source: TapeSource, kept: SegmentRow[]): Promise<{ text: string; lost: TapeImport['lost'] }> {
  const trailer = await findTrailer(source).catch(() => undefined);
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
