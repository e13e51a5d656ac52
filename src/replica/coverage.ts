import { keyGeneration, tapeKey, type Catalog } from './catalog.js';

export interface ChainReport {
  /** Sequence ranges held, merged. */
  coverage: Array<{ from: bigint; to: bigint }>;
  /** Holes between them, with the serials of the tapes that should fill them. */
  gaps: Array<{ from: bigint; to: bigint; serials: number[] }>;
  /**
   * Serials below the highest one held that the replica has not seen (of
   * each epoch's chain; a later epoch's as catalogue keys: serialText).
   */
  missingSerials: number[];
  /** The last record of the contiguous run from the start of the chain (what an acknowledgement may cover); null when the chain's start is missing. */
  contiguousThrough: bigint | null;
}

/** What the replica holds of the chain, and what is missing (pure over the catalogue). */
export function chainReport(cat: Catalog): ChainReport {
  const all = cat.tapes();
  // Serials are the tape chain's; link tapes (negative keys) have a chain of their own, checked by the link itself.
  const tapes = all.filter((t) => t.serial > 0);
  const coverage = cat.coverage();
  const have = new Set(tapes.map((t) => t.serial));
  const maxSerial = tapes.reduce((m, t) => Math.max(m, t.serial), 0);
  const expired = BigInt(cat.getMeta('expiredThrough') ?? '0');
  const missingSerials: number[] = [];
  const expiredSerials = new Set<number>(JSON.parse(cat.getMeta('expiredSerials') ?? '[]') as number[]);
  // Each epoch numbers its chain from 1: what is missing is looked for up to the newest tape held of each.
  const newest = new Map<number, number>();
  for (const t of tapes) newest.set(keyGeneration(t.serial), Math.max(newest.get(keyGeneration(t.serial)) ?? 0, t.serial));
  for (const [g, max] of [...newest.entries()].sort(([a], [b]) => a - b)) {
    for (let s = tapeKey('tapes', 1, g); s <= max; s++) if (!have.has(s) && !expiredSerials.has(s)) missingSerials.push(s);
  }
  const serialOf = (seq: bigint): number | undefined => tapes.find((t) => t.firstSeq !== null && t.lastSeq !== null && t.firstSeq <= seq && seq <= t.lastSeq)?.serial;
  const gaps: ChainReport['gaps'] = [];
  for (let i = 1; i < coverage.length; i++) {
    const a = coverage[i - 1] as { from: bigint; to: bigint };
    const b = coverage[i] as { from: bigint; to: bigint };
    const lo = serialOf(a.to) ?? 0;
    const hi = serialOf(b.from) ?? maxSerial + 1;
    const serials: number[] = [];
    // Within the epoch of the tape after the gap (a gap across a takeover: its tapes before that one).
    for (let s = Math.max(lo + 1, tapeKey('tapes', 1, keyGeneration(hi))); s < hi; s++) serials.push(s);
    gaps.push({ from: a.to + 1n, to: b.from - 1n, serials });
  }
  // The chain starts with tape 1 (or where expiry cut it): every tape up to the first with updates must be here.
  const first = coverage[0];
  const firstTape = tapes.find((t) => t.firstSeq !== null);
  const linkStart = all.some((t) => t.serial === -1 && t.firstSeq !== null && first !== undefined && t.firstSeq <= first.to);
  const startKnown = linkStart || (firstTape !== undefined && (expired > 0n || missingSerials.every((s) => s > firstTape.serial)));
  const contiguousThrough = first && startKnown ? first.to : null;
  return { coverage, gaps, missingSerials, contiguousThrough };
}
