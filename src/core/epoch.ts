import { JshipError } from './errors.js';

/**
 * Epochs (takeover, patent §0161-0166). A group's records form one line of
 * sequence numbers; when a secondary is promoted it starts a new *epoch* of
 * the same group whose first record follows the last record it held. The
 * *lineage* lists the promotions, oldest first: generation g began at
 * `startSeq` (its first record). Generation 1 starts at seq 1 and is not
 * listed, so a group never promoted has the empty lineage.
 *
 * A record of generation h with sequence number s is on a lineage when the
 * lineage reaches generation h and s comes before the start of generation
 * h + 1 there: records an old primary wrote after the takeover point are
 * not (they diverge).
 */
export interface EpochStart {
  generation: number;
  /** The first sequence number of this generation (decimal: it passes 2^53). */
  startSeq: string;
}

export type Lineage = readonly EpochStart[];

/** At most this many promotions in one lineage (the format's bound). */
export const MAX_EPOCHS = 1000;

/** Checks a lineage read from outside (group.json, a label, a link hello); `fail` names the field. */
export function checkLineage(v: unknown, fail: (why: string) => never): Lineage {
  if (!Array.isArray(v)) return fail('is not a list');
  if (v.length > MAX_EPOCHS) fail(`lists ${v.length} epochs, more than ${MAX_EPOCHS}`);
  let prev = 1n;
  v.forEach((e: unknown, i: number) => {
    const o = e as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || o.generation !== i + 2) fail(`entry ${i} is not generation ${i + 2}`);
    if (typeof o?.startSeq !== 'string' || !/^[1-9][0-9]{0,18}$/.test(o.startSeq)) fail(`entry ${i} has no startSeq`);
    const s = BigInt(o?.startSeq as string);
    if (s < prev) fail(`generation ${i + 2} starts at ${s}, before generation ${i + 1} (${prev})`);
    prev = s;
  });
  return v as Lineage;
}

export function generationOf(l: Lineage): number {
  return l.length === 0 ? 1 : (l[l.length - 1] as EpochStart).generation;
}

/** The first sequence number of generation `g` on `l`; 1 for generation 1. */
export function epochStart(l: Lineage, g: number): bigint {
  return g <= 1 ? 1n : BigInt((l[g - 2] as EpochStart).startSeq);
}

/**
 * Where records of generation `g` stop being on `l`: the start of the next
 * generation (records from it on diverge), or null when `g` is the newest.
 */
export function epochEnd(l: Lineage, g: number): bigint | null {
  const next = l[g - 1];
  return next ? BigInt(next.startSeq) : null;
}

/** Whether a record of generation `g` numbered `seq` is on lineage `l`. */
export function onLineage(l: Lineage, g: number, seq: bigint): boolean {
  if (g > generationOf(l)) return false;
  const end = epochEnd(l, g);
  return end === null || seq < end;
}

/**
 * How lineage `a` stands to `b`: `same`; `older` when `b` continues `a`
 * (more promotions after the same ones); `newer` the other way round;
 * `forked` when they disagree on a promotion (two sites promoted, or a
 * promotion at other points) — one of them is not this group's history.
 */
export function compareLineages(a: Lineage, b: Lineage): 'same' | 'older' | 'newer' | 'forked' {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i]?.startSeq !== b[i]?.startSeq) return 'forked';
  return a.length === b.length ? 'same' : a.length < b.length ? 'older' : 'newer';
}

/** The lineage as people read it: `epoch 1`, `epoch 3 (2 from 1001, 3 from 2050)`. */
export function lineageText(l: Lineage): string {
  return l.length === 0 ? 'epoch 1' : `epoch ${generationOf(l)} (${l.map((e) => `${e.generation} from seq ${e.startSeq}`).join(', ')})`;
}

/** The lineage of a new promotion: generation g + 1 begins at `startSeq`. */
export function promoted(l: Lineage, startSeq: bigint): Lineage {
  const last = l.length === 0 ? 1n : BigInt((l[l.length - 1] as EpochStart).startSeq);
  if (startSeq < last) throw new JshipError('PROMOTE_REFUSED', `a promotion at seq ${startSeq} would start before the current epoch (from seq ${last})`, { hint: 'promote at a later point' });
  return [...l, { generation: generationOf(l) + 1, startSeq: startSeq.toString() }];
}
