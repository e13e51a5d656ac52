import { promises as fsp } from 'node:fs';
import { JshipError, param } from '../core/errors.js';
import type { Catalog, MarkerRow, SegmentRow, TapeRow } from './catalog.js';
import { Replica, type ReplicaWait } from './replica.js';
import { syncDir } from '../io/files.js';
import { readReplicaState } from './replica-state.js';
import { livePins } from './mount-pins.js';

export interface ExpirePlan {
  /** The base every kept restore point starts from; null when nothing can go. */
  keepFromBase: { baseId: bigint; completeSeq: bigint; completeTs: bigint } | null;
  remove: TapeRow[];
  keep: TapeRow[];
  bytes: number;
  reason: string;
  /** Tapes kept only because the SVOLs' next restore needs them. */
  keptForSvols: number[];
}

/** Complete full bases, oldest first: a base-started marker (scope full) with its base-complete marker. */
export function completeBases(cat: Pick<Catalog, 'markers'>): Array<{ baseId: bigint; completeSeq: bigint; completeTs: bigint }> {
  const markers = cat.markers();
  const started = new Map<bigint, MarkerRow>();
  for (const m of markers) if (m.kind === 'base-started' && m.scope === 'full' && m.baseId !== null) started.set(m.baseId, m);
  const out: Array<{ baseId: bigint; completeSeq: bigint; completeTs: bigint }> = [];
  for (const m of markers) {
    if (m.kind === 'base-complete' && m.baseId !== null && started.has(m.baseId)) out.push({ baseId: m.baseId, completeSeq: m.seq, completeTs: m.ts });
  }
  return out;
}

/** Whether the replica holds every record of base `id`: as many as its "base complete" marker counts. */
export function baseWhole(segments: readonly SegmentRow[], markers: readonly MarkerRow[], id: bigint): boolean {
  const done = markers.find((m) => m.kind === 'base-complete' && m.baseId === id);
  const expected = done ? Number((JSON.parse(done.payload) as { records?: number }).records ?? -1) : -1;
  return segments.reduce((n, s) => n + (s.kind === 'base' && s.baseId === id ? s.records : 0), 0) === expected;
}

/**
 * The complete full bases a restore can start from in this replica: every
 * one of its base records held (its "base complete" marker counts them) and
 * the records written while it was taken. A base taken for a link secondary
 * is marked in the journal (and so on tapes) but its records went over the
 * link only: on a replica fed by tapes it is not a base at all. `source`:
 * where its records came from.
 */
export function usableBases(cat: Catalog): Array<{ baseId: bigint; completeSeq: bigint; completeTs: bigint; source: 'tapes' | 'link' }> {
  const segments = cat.segments().filter((s) => s.kind === 'base');
  const markers = cat.markers();
  const cov = cat.coverage();
  const out: Array<{ baseId: bigint; completeSeq: bigint; completeTs: bigint; source: 'tapes' | 'link' }> = [];
  for (const b of completeBases(cat)) {
    const mine = segments.filter((s) => s.baseId === b.baseId);
    const covered = cov.some((c) => c.from <= b.baseId + 1n && b.completeSeq <= c.to);
    if (baseWhole(mine, markers, b.baseId) && covered) out.push({ ...b, source: mine.every((s) => s.serial < 0) && mine.length > 0 ? 'link' : 'tapes' });
  }
  return out;
}

/**
 * What retention may remove: everything no restore point after the cut needs.
 * Restore points from `keepSinceTs` on (or from the Nth newest base on) start
 * from the newest full base complete by then; its base records and every
 * update from its "base started" marker on stay, and so does anything newer.
 */
export function planExpire(cat: Catalog, rule: { keepSinceTs: bigint } | { keepLast: number }, svolSeq = 0n): ExpirePlan {
  const bases = usableBases(cat);
  const ignored = completeBases(cat).filter((b) => !bases.some((x) => x.baseId === b.baseId));
  const tapes = cat.tapes();
  let base: (typeof bases)[number] | undefined;
  let reason: string;
  const from = (b: (typeof bases)[number]): string => `base ${b.baseId} (from ${b.source === 'link' ? 'the direct link' : 'tapes'}, complete at seq ${b.completeSeq})`;
  if ('keepLast' in rule) {
    base = bases.length >= rule.keepLast ? bases[bases.length - rule.keepLast] : undefined;
    reason = base ? `keep the last ${rule.keepLast} usable base(s), from ${from(base)}` : `fewer than ${rule.keepLast} usable bases (${bases.length}): everything stays`;
  } else {
    base = [...bases].reverse().find((b) => b.completeTs <= rule.keepSinceTs);
    reason = base ? `restore points from the cut on start from ${from(base)}` : 'no usable full base was complete by the cut: everything stays';
  }
  if (ignored.length > 0) {
    reason += `; not counted: base${ignored.length > 1 ? 's' : ''} ${ignored.map((b) => b.baseId).join(', ')} (marked complete, but this replica does not hold ${ignored.length > 1 ? 'their' : 'its'} base records — a base sent to a link secondary, or tapes not imported)`;
  }
  if (!base) return { keepFromBase: null, remove: [], keep: tapes, bytes: 0, reason, keptForSvols: [] };
  const b = base;
  const segments = cat.segments();
  const needed = new Set<number>();
  for (const s of segments) {
    if (s.kind === 'base' ? s.baseId !== null && s.baseId >= b.baseId : s.lastSeq >= b.baseId) needed.add(s.serial);
  }
  // The SVOLs move forward from where they are: their next restore needs every record after it (and resync bases after it).
  const keptForSvols = new Set<number>();
  if (svolSeq > 0n) {
    for (const s of segments) {
      const wanted = s.kind === 'base' ? s.baseId !== null && s.baseId > svolSeq : s.lastSeq > svolSeq;
      if (wanted && !needed.has(s.serial)) keptForSvols.add(s.serial);
    }
    for (const k of keptForSvols) needed.add(k);
    if (keptForSvols.size > 0) {
      reason += `; tapes ${[...keptForSvols].sort((x, y) => x - y).join(', ')} stay for the SVOLs (restored to seq ${svolSeq}): their next restore needs the records after it — restore the SVOLs to a later point (jship restore REPLICA_DIR), then expire again`;
    }
  }
  // A tape with no segments (an empty export) goes with the tapes before it, in its own chain
  // (the tape chain's keys are its serials, a link secondary's are minus its serials).
  const maxNeeded = (link: boolean): number => Math.max(0, ...[...needed].filter((k) => k < 0 === link).map(Math.abs));
  const remove = tapes.filter((t) => !needed.has(t.serial) && Math.abs(t.serial) < maxNeeded(t.serial < 0));
  const keep = tapes.filter((t) => !remove.includes(t));
  const forSvols = [...keptForSvols].filter((k) => !remove.some((t) => t.serial === k)).sort((x, y) => x - y);
  return { keepFromBase: b, remove, keep, bytes: remove.reduce((n, t) => n + t.bytes, 0), reason, keptForSvols: forSvols };
}

/**
 * Plans retention and, with `confirm`, removes the tapes (files and
 * catalogue rows). `expiredSerials`: every serial retention has removed from
 * this replica, now (or, in a dry run, would) and before.
 */
export async function expireReplica(dir: string, rule: { keepSinceTs: bigint } | { keepLast: number }, confirm: boolean, wait?: ReplicaWait): Promise<ExpirePlan & { removed: boolean; expiredSerials: number[] }> {
  if ('keepLast' in rule && (!Number.isSafeInteger(rule.keepLast) || rule.keepLast < 1)) {
    throw new JshipError('USAGE', `${param('keepLast')} ${rule.keepLast} is not a positive number of bases`, { hint: `e.g. ${param('keepLast')} 2` });
  }
  const replica = await Replica.open(dir, wait ? { wait } : {});
  try {
    await replica.checkCatalogued();
    const cat = replica.catalog;
    const state = await readReplicaState(replica.dir);
    if (confirm) await removeExpiring(replica);
    const plan = planExpire(cat, rule, BigInt(state.svol.restoredSeq));
    const serials = new Set<number>(JSON.parse(cat.getMeta('expiredSerials') ?? '[]') as number[]);
    for (const t of plan.remove) serials.add(t.serial);
    const expiredSerials = [...serials].sort((a, b) => a - b);
    if (confirm && plan.remove.length > 0 && plan.keepFromBase) {
      // A running mount reads its tapes through open handles: removing them would not harm it, but
      // the point it serves (and a drill's record of it) must stay restorable from this replica.
      for (const pin of await livePins(replica.dir)) {
        const used = plan.remove.filter((t) => pin.tapes.includes(t.serial)).map((t) => t.serial);
        if (used.length === 0) continue;
        throw new JshipError('REPLICA_IN_USE', `tape${used.length > 1 ? 's' : ''} ${used.join(', ')} would go, but the mount of ${pin.point} (pid ${pin.pid} on ${pin.host}, since ${pin.since}) reads ${used.length > 1 ? 'them' : 'it'}; nothing was removed`, {
          hint: 'stop that mount (SIGTERM, or Ctrl-C where it runs), then expire again',
          details: { pid: pin.pid, tapes: used.join(',') },
        });
      }
      // The rows go in one transaction with the record of the expiry and of the files to remove: an expire
      // killed before it removed them all left files no catalogue row named, never removed, and brought
      // back by a rebuilt catalogue. The next expire (or rebuild) removes what the record still names.
      cat.deleteTapes(plan.remove.map((t) => t.serial), {
        expiredSerials: JSON.stringify(expiredSerials),
        expiredThrough: (plan.keepFromBase.baseId - 1n).toString(),
        [EXPIRING]: JSON.stringify(plan.remove.map((t) => t.file)),
      });
      await removeExpiring(replica);
    }
    return { ...plan, removed: confirm && plan.remove.length > 0, expiredSerials };
  } finally {
    await replica.close();
  }
}

/** Catalogue key of the tape files an expire has taken out of the catalogue and is removing. */
const EXPIRING = 'expiringFiles';

/** Removes the files an expire took out of the catalogue (this one, or one killed before it was done). */
export async function removeExpiring(replica: Replica): Promise<void> {
  const files = expiringFiles(replica.catalog.getMeta(EXPIRING));
  if (files.length === 0) return;
  // A file of that name imported again since is the catalogue's again: it stays.
  const listed = new Set(replica.catalog.tapes().map((t) => t.file));
  for (const f of files) if (!listed.has(f)) await fsp.rm(replica.tapePath(f), { force: true });
  await syncDir(replica.tapesDir);
  replica.catalog.deleteMeta(EXPIRING);
}

/** The file names an EXPIRING value lists (plain names in tapes/ only). */
function expiringFiles(value: string | undefined): string[] {
  let v: unknown;
  try {
    v = JSON.parse(value ?? '[]');
  } catch {
    return [];
  }
  return Array.isArray(v) ? v.filter((f): f is string => typeof f === 'string' && f !== '' && !f.includes('/') && f !== '.' && f !== '..') : [];
}
