import { promises as fsp } from 'node:fs';
import { JshipError } from '../core/errors.js';
import type { GroupConfig } from '../core/group-config.js';
import { decodeMarker } from '../core/marker.js';
import { RecordType, type RecordHeader } from '../core/record.js';
import { SB_CLEAN } from '../core/superblock.js';
import { writeFileAtomic } from '../io/files.js';
import type { Volume } from '../volume/volume.js';
import type { DirtyBitmap } from './dirty-bitmap.js';
import { groupPaths, readMarkerLog, type MarkerEntry } from './group-files.js';
import type { JournalVolume } from './journal-volume.js';

/** What recovery found in the journal, for the group to go on from. */
export interface Recovered {
  /** Per volume: its update records and their data bytes still in the journal. */
  perVolume: Array<{ records: number; bytes: number }>;
  /** Every restore point's name (the marker log, completed from the journal). */
  markerNames: Set<string>;
  /** The newest timestamp the group gave out: its clock goes on after it. */
  lastTimestamp: bigint;
  /** The superblock's flags as recovery left them (never clean: the group is open). */
  flags: number;
}

/** A group demoted to a secondary (`jship demote`) is not opened: its volumes are a replica's SVOLs now. */
export async function refuseDemoted(dir: string): Promise<void> {
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

/**
 * Recovery of an opened group, before it serves anything (after a crash or
 * a clean close alike): finds the end of the log (the journal volume's
 * recover), counts each volume's records, marks the epoch's written chunks,
 * redoes on the PVOLs every record after the last durable applied pointer
 * (idempotent, in order) and syncs them, puts back into the marker log the
 * restore points whose line a crash lost, and writes the superblock: head
 * at the end of the log, applied at its last record, not clean.
 */
export async function recoverGroup(dir: string, config: GroupConfig, journal: JournalVolume, volumes: readonly Volume[], epochDirty: DirtyBitmap | undefined): Promise<Recovered> {
  const perVolume = config.volumes.map(() => ({ records: 0, bytes: 0 }));
  const markerSeqs: bigint[] = [];
  let lastTs = journal.lastTimestamp;
  await journal.recover((h) => {
    if (h.timestamp > lastTs) lastTs = h.timestamp;
    if (h.type === RecordType.Marker) {
      markerSeqs.push(h.seq);
      return;
    }
    epochDirty?.setRange(h.volume, h.offset, h.length);
    const pv = perVolume[h.volume];
    if (!pv) throw new JshipError('JOURNAL_CORRUPT', `journal ${journal.path}: record ${h.seq} names volume ${h.volume}, the group has ${config.volumes.length}`, { hint: 'the journal does not belong to this group config' });
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
  const markerNames = await completeMarkerLog(dir, journal, markerSeqs);
  const flags = journal.superblock.flags & ~SB_CLEAN;
  await journal.writeSuperblock({ headSeq: end, headDataPos: journal.writtenPos, appliedSeq: end - 1n, lastTimestamp: lastTs, flags }, true);
  return { perVolume, markerNames, lastTimestamp: lastTs, flags };
}

/** The marker log with every restore point the journal still holds (a crash may have lost its line); returns every name. */
async function completeMarkerLog(dir: string, journal: JournalVolume, markerSeqs: readonly bigint[]): Promise<Set<string>> {
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
  if (missing.length > 0) await writeFileAtomic(groupPaths(dir).markers, [...log, ...missing].map((m) => `${JSON.stringify(m)}\n`).join(''));
  return names;
}

/** Applies one journal record to the PVOLs (recovery redo). */
async function applyToVolume(volumes: readonly Volume[], h: RecordHeader, data: Buffer): Promise<void> {
  if (h.type === RecordType.Marker) return;
  const vol = volumes[h.volume];
  if (!vol) throw new JshipError('JOURNAL_CORRUPT', `record ${h.seq} names volume ${h.volume}, which the group does not have`);
  if (h.type === RecordType.Update) await vol.write(h.offset, data);
  else await vol.writeZeroes(h.offset, h.length);
}
