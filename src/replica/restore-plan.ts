import { JshipError, isJshipError } from '../core/errors.js';
import { indexLength, readIndexEntry } from '../core/record-index.js';
import { formatTime } from '../core/time.js';
import { mergedRanges, type Catalog, type SegmentRow } from './catalog.js';
import { baseWhole, completeBases } from './expire.js';

/** What planning reads of a catalogue. */
export type PlanRows = Pick<Catalog, 'coverage' | 'segments' | 'markers' | 'recordIndex'>;

const readOnce = new WeakSet<PlanRows>();

/**
 * The catalogue's rows as one plan (or a caller asking for several) reads them: the segments, the coverage
 * and the markers each read (their CRCs checked) once, however often the
 * plan asks — a plan for "latest" asked for them up to eight times, 80 ms
 * of a 1 GiB restore.
 */
export function planRows(cat: PlanRows): PlanRows {
  if (readOnce.has(cat)) return cat;
  let segments: SegmentRow[] | undefined;
  let coverage: ReturnType<Catalog['coverage']> | undefined;
  let markers: ReturnType<Catalog['markers']> | undefined;
  const rows: PlanRows = {
    segments: (serial) => (serial === undefined ? (segments ??= cat.segments()) : cat.segments(serial)),
    // The update segments' ranges, merged as the catalogue merges them: from the rows read already.
    coverage: () => (coverage ??= mergedRanges(rows.segments().filter((x) => x.kind === 'update').sort((a, b) => (a.firstSeq < b.firstSeq ? -1 : a.firstSeq > b.firstSeq ? 1 : 0)))),
    markers: () => (markers ??= cat.markers()),
    recordIndex: (serial, idx) => cat.recordIndex(serial, idx),
  };
  readOnce.add(rows);
  return rows;
}

/** Which point to restore to. */
export type PointSpec =
  | { kind: 'latest' }
  | { kind: 'seq'; seq: bigint }
  | { kind: 'until'; ts: bigint; exclusive: boolean }
  | { kind: 'marker'; name: string };

export interface BaseChoice {
  baseId: bigint;
  scope: 'full' | 'resync';
  completeSeq: bigint | null;
  segments: SegmentRow[];
}

/**
 * An update segment and the part of it a plan applies: records `first`..`last`.
 * Tapes and the link can both hold a record, in segments cut differently;
 * each record is taken from one of them.
 */
export interface PlannedSegment extends SegmentRow {
  first: bigint;
  last: bigint;
}

export interface RestorePlan {
  /** Records with sequence numbers up to this one are applied. */
  seq: bigint;
  /** The time the result represents: the timestamp of record `seq`. */
  ts: bigint;
  point: string;
  /** Bases applied (a full base, then resync bases); empty for an incremental SVOL restore. */
  bases: BaseChoice[];
  /** Updates applied: those with from < seq <= plan.seq. */
  from: bigint;
  /** In sequence order, each sequence number in exactly one of them. */
  updateSegments: PlannedSegment[];
  /** Base records with a position beyond the point are left out (--inconsistent only). */
  inconsistent: boolean;
  records: number;
}

const ranges = (cov: Array<{ from: bigint; to: bigint }>): string => cov.map((c) => `${c.from}..${c.to}`).join(', ') || 'none';

/** The first missing range of sequence numbers within from..to. */
function firstGap(cov: Array<{ from: bigint; to: bigint }>, from: bigint, to: bigint): { from: bigint; to: bigint } {
  let at = from;
  for (const c of cov) {
    if (c.to < at) continue;
    if (c.from > at) return { from: at, to: (c.from - 1n < to ? c.from - 1n : to) };
    at = c.to + 1n;
    if (at > to) break;
  }
  return { from: at, to };
}

function refuse(message: string, hint: string): never {
  throw new JshipError('RESTORE_REFUSED', message, { hint });
}

/** Resolves a point to the last sequence number it includes, refusing points the replica cannot vouch for. */
export function resolvePoint(catalog: PlanRows, spec: PointSpec): { seq: bigint; ts: bigint; point: string } {
  const cat = planRows(catalog);
  const cov = cat.coverage();
  if (cov.length === 0) refuse('the replica holds no journal records', 'import tapes first (jship import)');
  const held = (s: bigint): boolean => cov.some((c) => c.from <= s && s <= c.to);
  const updates = cat.segments().filter((s) => s.kind === 'update');
  const tsOf = (seq: bigint): bigint => {
    const seg = updates.find((s) => s.firstSeq <= seq && seq <= s.lastSeq) as SegmentRow;
    const idx = cat.recordIndex(seg.serial, seg.idx);
    return readIndexEntry(idx, Number(seq - seg.firstSeq)).ts;
  };
  const first = cov[0] as { from: bigint; to: bigint };
  switch (spec.kind) {
    case 'latest':
      return { seq: first.to, ts: tsOf(first.to), point: `latest (seq ${first.to}${cov.length > 1 ? ', before the first gap' : ''})` };
    case 'seq':
      if (!held(spec.seq)) refuse(`record ${spec.seq} is not in the replica (it holds ${ranges(cov)})`, 'choose a sequence number inside the covered ranges, or import the missing tapes');
      return { seq: spec.seq, ts: tsOf(spec.seq), point: `seq ${spec.seq}` };
    case 'marker': {
      const m = cat.markers().find((x) => x.kind === 'restore-point' && x.name === spec.name);
      if (!m) {
        const names = cat.markers().filter((x) => x.kind === 'restore-point').map((x) => x.name);
        refuse(`no restore point named "${spec.name}" in the replica`, names.length ? `known restore points: ${names.join(', ')}` : 'the replica holds no named restore points (jship mark makes them)');
      }
      return { seq: m.seq, ts: m.ts, point: `marker "${spec.name}" (seq ${m.seq})` };
    }
    case 'until': {
      const ok = (ts: bigint): boolean => (spec.exclusive ? ts < spec.ts : ts <= spec.ts);
      const candidates = updates.filter((s) => ok(s.firstTs)).sort((a, b) => (a.lastSeq < b.lastSeq ? -1 : 1));
      const seg = candidates[candidates.length - 1];
      const firstTs = updates.reduce<bigint | null>((m, s) => (m === null || s.firstTs < m ? s.firstTs : m), null);
      if (!seg) refuse(`${formatTime(spec.ts)} is before the first record in the replica (${firstTs !== null ? formatTime(firstTs) : 'none'})`, 'choose a later time; jship timeline shows what can be restored');
      const idx = cat.recordIndex(seg.serial, seg.idx);
      let seq = seg.firstSeq;
      let ts = readIndexEntry(idx, 0).ts;
      for (let i = 0; i < indexLength(idx); i++) {
        const e = readIndexEntry(idx, i);
        if (!ok(e.ts)) break;
        seq = e.seq;
        ts = e.ts;
      }
      const interval = cov.find((c) => c.from <= seq && seq <= c.to) as { from: bigint; to: bigint };
      if (seq === interval.to) {
        const later = cov.find((c) => c.from > seq);
        if (later) refuse(`${formatTime(spec.ts)} falls in a gap: records ${seq + 1n}..${later.from - 1n} are missing`, `import the missing tapes, or choose a time up to ${formatTime(ts)} (the replica holds ${ranges(cov)})`);
        if (!ok(ts) || spec.ts > ts) {
          refuse(`${formatTime(spec.ts)} is after the last record in the replica (seq ${seq}, ${formatTime(ts)})`, `records after it may exist but have not arrived; choose a time up to ${formatTime(ts)} or restore the latest point`);
        }
      }
      return { seq, ts, point: `${spec.exclusive ? 'before' : 'until'} ${formatTime(spec.ts)} (seq ${seq})` };
    }
  }
}

/**
 * Plans a restore: the point, the base to start from (the newest full base
 * complete by the point whose records up to the point are all here, plus any
 * resync bases after it), and the update segments to apply. `svolSeq` makes
 * it incremental from an SVOL already restored to that sequence number.
 */
export function planRestore(catalog: PlanRows, spec: PointSpec, opts: { svolSeq?: bigint; inconsistent?: boolean } = {}): RestorePlan {
  const cat = planRows(catalog);
  try {
    return planPoint(cat, spec, opts);
  } catch (e) {
    // A refused point names what can be restored instead (not for the SVOLs: they only move forward).
    if (!isJshipError(e, 'RESTORE_REFUSED') || (opts.svolSeq ?? 0n) > 0n || cat.coverage().length === 0) throw e;
    const ranges = restorableRanges(cat);
    const what = ranges.length === 0 ? 'nothing in this replica can be restored yet' : `restorable: ${ranges.map((r) => `seq ${r.fromSeq}..${r.toSeq} (${formatTime(r.fromTs)} .. ${formatTime(r.toTs)})`).join('; ')}`;
    throw new JshipError('RESTORE_REFUSED', e.message, { hint: `${e.hint ?? ''}${e.hint ? '; ' : ''}${what}`, details: e.details });
  }
}

/** A run of sequence numbers every one of which `restore --seq` accepts, with the times of its ends. */
export interface RestorableRange {
  fromSeq: bigint;
  toSeq: bigint;
  fromTs: bigint;
  toTs: bigint;
}

/**
 * Every point the replica can restore, as ranges of sequence numbers: exactly
 * the points `planRestore` accepts. Whether a point is restorable changes only
 * at the ends of the covered ranges, at base completions and at suspensions,
 * so one plan per stretch between those decides for the whole stretch.
 */
export function restorableRanges(catalog: PlanRows): RestorableRange[] {
  const cat = planRows(catalog);
  const cov = cat.coverage();
  const cuts = new Set<bigint>();
  for (const c of cov) {
    cuts.add(c.from);
    cuts.add(c.to + 1n);
  }
  for (const m of cat.markers()) {
    if (m.kind === 'base-complete' || m.kind === 'suspended') cuts.add(m.seq);
  }
  const sorted = [...cuts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const runs: RestorableRange[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const from = sorted[i] as bigint;
    const to = (sorted[i + 1] as bigint) - 1n;
    if (!cov.some((c) => c.from <= from && to <= c.to) || refusal(cat, from) !== null) continue;
    const last = runs[runs.length - 1];
    if (last && last.toSeq + 1n === from) last.toSeq = to;
    else runs.push({ fromSeq: from, toSeq: to, fromTs: 0n, toTs: 0n });
  }
  for (const r of runs) {
    r.fromTs = resolvePoint(cat, { kind: 'seq', seq: r.fromSeq }).ts;
    r.toTs = resolvePoint(cat, { kind: 'seq', seq: r.toSeq }).ts;
  }
  return runs;
}

/** Why `restore --seq` refuses `seq` (its message), or null when it plans it; without naming what else can be restored. */
export function refusal(cat: PlanRows, seq: bigint): string | null {
  try {
    planPoint(planRows(cat), { kind: 'seq', seq });
    return null;
  } catch (e) {
    if (isJshipError(e, 'RESTORE_REFUSED')) return e.message;
    throw e;
  }
}

function planPoint(cat: PlanRows, spec: PointSpec, opts: { svolSeq?: bigint; inconsistent?: boolean } = {}): RestorePlan {
  if (spec.kind === 'latest') return planLatest(cat, opts);
  const p = resolvePoint(cat, spec);
  const cov = cat.coverage();
  const covers = (from: bigint, to: bigint): boolean => from > to || cov.some((c) => c.from <= from && to <= c.to);
  const segments = cat.segments();
  const markers = cat.markers();
  const baseSegments = (id: bigint): SegmentRow[] => segments.filter((s) => s.kind === 'base' && s.baseId === id);
  const whole = (id: bigint): boolean => baseWhole(segments, markers, id);
  const svol = opts.svolSeq;

  // Suspensions: no consistent point between a "suspended" marker and the completion of a resync base after it.
  const suspended = markers.filter((m) => m.kind === 'suspended' && m.seq <= p.seq);
  const lastSuspension = suspended[suspended.length - 1];
  const resyncs = markers.filter((m) => m.kind === 'base-started' && m.scope === 'resync');
  const resyncComplete = (id: bigint): bigint | null => markers.find((m) => m.kind === 'base-complete' && m.baseId === id)?.seq ?? null;
  if (lastSuspension) {
    // Healed by a base (resync or full) started after it, complete by the point, whose records are all here.
    const after = markers.filter((m) => m.kind === 'base-started' && m.seq > lastSuspension.seq);
    const healed = after.some((r) => (resyncComplete(r.seq) ?? p.seq + 1n) <= p.seq && whole(r.seq));
    if (!healed && !opts.inconsistent) {
      refuse(`no consistent point at seq ${p.seq}: the journal was suspended at seq ${lastSuspension.seq} and no base (resync or full) whose records the replica holds completed after it by the point`, 'choose a point before the suspension, or one after a resync or full base completes (jship timeline shows them); a base the replica lacks comes with its tapes or a new base');
    }
  }

  if (svol !== undefined && svol > 0n) {
    if (p.seq < svol) refuse(`the SVOLs are already at seq ${svol}, later than ${p.point}`, 'restores into the SVOLs only move forward: restore into a file or device with --target');
    if (!covers(svol + 1n, p.seq)) refuse(`records ${svol + 1n}..${p.seq} are not all in the replica (it holds ${ranges(cov)})`, 'import the missing tapes first');
    const bases = resyncs
      .filter((r) => r.seq > svol && (resyncComplete(r.seq) ?? p.seq + 1n) <= p.seq && whole(r.seq))
      .map((r): BaseChoice => ({ baseId: r.seq, scope: 'resync', completeSeq: resyncComplete(r.seq), segments: baseSegments(r.seq) }));
    return finish(p, bases, svol, segments, false);
  }

  const full = completeBases(cat).filter((b) => b.completeSeq <= p.seq).reverse();
  const chosen = full.find((b) => covers(b.baseId + 1n, p.seq) && whole(b.baseId));
  if (!chosen) {
    const started = markers.filter((m) => m.kind === 'base-started' && m.scope === 'full' && m.seq <= p.seq).pop();
    if (opts.inconsistent && started && baseSegments(started.seq).length > 0) {
      // --inconsistent relaxes the base rule only, never the gap rule.
      if (!covers(started.seq + 1n, p.seq)) {
        const gap = firstGap(cov, started.seq + 1n, p.seq);
        refuse(`${p.point} cannot be restored even as an inconsistent image: records ${gap.from}..${gap.to} are missing (the replica holds ${ranges(cov)})`, 'import the missing tapes, or choose a point before the gap');
      }
      return finish(p, [{ baseId: started.seq, scope: 'full', completeSeq: null, segments: baseSegments(started.seq) }], started.seq, segments, true);
    }
    if (started && !full.some((b) => b.baseId === started.seq)) {
      refuse(`${p.point} is before base ${started.seq} completed: the volumes were not yet fully copied then`, 'choose a later point (jship timeline shows when the base completed), or add --inconsistent to restore a partial image');
    }
    if (full.length > 0) refuse(`no base usable for ${p.point}: base ${full[0]?.baseId} needs records or base tapes the replica does not hold (it holds ${ranges(cov)})`, 'import the missing tapes');
    refuse(`no complete base by ${p.point}: the replica holds no full copy of the volumes before it`, 'export a base (jship export --base) and import it, or choose a later point');
  }
  const bases: BaseChoice[] = [{ baseId: chosen.baseId, scope: 'full', completeSeq: chosen.completeSeq, segments: baseSegments(chosen.baseId) }];
  for (const r of resyncs) {
    const done = resyncComplete(r.seq);
    if (r.seq > chosen.baseId && done !== null && done <= p.seq && whole(r.seq)) bases.push({ baseId: r.seq, scope: 'resync', completeSeq: done, segments: baseSegments(r.seq) });
  }
  return finish(p, bases, chosen.baseId, segments, false);
}

/**
 * The first apply of an old primary demoted to a secondary (`jship demote`):
 * its volumes, the SVOLs, hold the group as of the records before the
 * replica's first resync base everywhere outside that base's chunks (the
 * primary listed every chunk written since the takeover point, on either
 * side). That base and every record from the first one held to the base's
 * completion bring them to the completion — a consistent point. `requestId`:
 * the base written for this request (`jship export --resync-for`: the
 * tape chain may hold other resync bases); else the first resync base (the
 * link sends the requested one first on this secondary's own chain).
 */
export function planAdopt(cat: PlanRows, requestId?: string): RestorePlan {
  const markers = cat.markers();
  const segments = cat.segments();
  const forRequest = (payload: string): boolean => requestId === undefined || (JSON.parse(payload) as { for?: unknown }).for === requestId;
  const started = markers.find((m) => m.kind === 'base-started' && m.scope === 'resync' && forRequest(m.payload));
  if (!started) return refuse(`the replica holds no resync base${requestId !== undefined ? ` written for request ${requestId}` : ''} to bring the demoted volumes up to date with`, requestId !== undefined ? 'at the new primary: jship export GROUP_DIR --to MEDIA --resync-for resync-request.json, then jship demote again with --follow MEDIA' : 'run jship demote again: the new primary sends one first');
  const done = markers.find((m) => m.kind === 'base-complete' && m.baseId === started.seq);
  if (!done || !baseWhole(segments, markers, started.seq)) return refuse(`resync base ${started.seq} is not complete in the replica yet`, 'run jship demote again to receive the rest');
  const first = segments.filter((x) => x.kind === 'update').reduce<bigint | null>((m, x) => (m === null || x.firstSeq < m ? x.firstSeq : m), null);
  if (first === null || first > started.seq) return refuse(`the replica's records begin after resync base ${started.seq} started`, 'demote again into a new replica directory');
  const base: BaseChoice = { baseId: started.seq, scope: 'resync', completeSeq: done.seq, segments: segments.filter((x) => x.kind === 'base' && x.baseId === started.seq) };
  return finish({ seq: done.seq, ts: done.ts, point: `resync base ${started.seq} complete (seq ${done.seq})` }, [base], first - 1n, segments, false);
}

/**
 * "Latest" is the newest restorable point (DESIGN, "Which point"): the end of
 * the newest run of records held that some complete base reaches, whatever
 * gaps lie before that base.
 */
function planLatest(cat: PlanRows, opts: { svolSeq?: bigint; inconsistent?: boolean }): RestorePlan {
  const cov = cat.coverage();
  if (cov.length === 0) resolvePoint(cat, { kind: 'latest' });
  let refusal: unknown;
  for (const c of [...cov].reverse()) {
    try {
      const plan = planPoint(cat, { kind: 'seq', seq: c.to }, opts);
      return { ...plan, point: `latest (seq ${c.to}${c !== cov[cov.length - 1] ? `, the newest restorable: records after a later gap have no base` : ''})` };
    } catch (e) {
      if (!isJshipError(e, 'RESTORE_REFUSED')) throw e;
      refusal ??= e;
    }
  }
  throw refusal;
}

function finish(p: { seq: bigint; ts: bigint; point: string }, bases: BaseChoice[], from: bigint, segments: SegmentRow[], inconsistent: boolean): RestorePlan {
  const candidates = segments
    .filter((s) => s.kind === 'update' && s.lastSeq > from && s.firstSeq <= p.seq)
    .sort((a, b) => (a.firstSeq < b.firstSeq ? -1 : a.firstSeq > b.firstSeq ? 1 : a.lastSeq > b.lastSeq ? -1 : a.lastSeq < b.lastSeq ? 1 : 0));
  // Each sequence number once: walk up from `from`, taking from each segment only what is not taken yet.
  const updateSegments: PlannedSegment[] = [];
  let next = from + 1n;
  for (const s of candidates) {
    if (s.lastSeq < next || s.firstSeq > next) continue;
    const last = s.lastSeq < p.seq ? s.lastSeq : p.seq;
    updateSegments.push({ ...s, first: next, last });
    next = last + 1n;
    if (next > p.seq) break;
  }
  // Every sequence number from the base's start to the point, or no plan: a restore never skips records.
  if (next <= p.seq) {
    refuse(`${p.point} cannot be restored: records ${next}..${p.seq} are not all in the replica`, 'import the missing tapes, or choose an earlier point (jship timeline shows what can be restored)');
  }
  const records = updateSegments.reduce((n, s) => n + Number(s.last - s.first + 1n), 0)
    + bases.reduce((n, b) => n + b.segments.reduce((m, s) => m + s.records, 0), 0);
  return { ...p, bases, from, updateSegments, inconsistent, records };
}
