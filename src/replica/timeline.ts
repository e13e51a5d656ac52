import type { Catalog } from './catalog.js';
import { chainReport } from './coverage.js';
import { planRows, refusal, restorableRanges, type RestorableRange } from './restore-plan.js';

export interface Timeline {
  /** Held sequence ranges with their time ranges. */
  coverage: Array<{ fromSeq: bigint; toSeq: bigint; fromTs: bigint; toTs: bigint }>;
  gaps: Array<{ from: bigint; to: bigint; serials: number[] }>;
  missingSerials: number[];
  bases: Array<{ baseId: bigint; scope: string; startedTs: bigint; completeSeq: bigint | null; completeTs: bigint | null }>;
  /** Each with whether `restore` accepts it, and why not (the refusal's message). */
  markers: Array<{ seq: bigint; ts: bigint; kind: string; name: string | null; restorable: boolean; why: string | null }>;
  /** Every run of points `restore` accepts (exactly those: see restorableRanges). */
  restorable: RestorableRange[];
  /** Records per time bucket over the covered span (for a write-rate sparkline). */
  rate: { fromTs: bigint; toTs: bigint; buckets: number[] };
}

/** What can be restored, read from the catalogue alone. */
export function buildTimeline(cat: Catalog, buckets = 60): Timeline {
  const chain = chainReport(cat);
  const segs = cat.segments().filter((s) => s.kind === 'update');
  const coverage = chain.coverage.map((c) => {
    const inside = segs.filter((s) => s.firstSeq >= c.from && s.lastSeq <= c.to);
    return {
      fromSeq: c.from, toSeq: c.to,
      fromTs: inside.reduce((m, s) => (s.firstTs < m ? s.firstTs : m), inside[0]?.firstTs ?? 0n),
      toTs: inside.reduce((m, s) => (s.lastTs > m ? s.lastTs : m), 0n),
    };
  });
  const markers = cat.markers();
  const bases = markers.filter((m) => m.kind === 'base-started').map((m) => {
    const done = markers.find((x) => x.kind === 'base-complete' && x.baseId === m.seq);
    return { baseId: m.seq, scope: m.scope ?? 'full', startedTs: m.ts, completeSeq: done?.seq ?? null, completeTs: done?.ts ?? null };
  });
  // Read once for every plan below (a refused marker's reason is a plan).
  const rows = planRows(cat);
  const restorable = restorableRanges(rows);
  const lo = coverage[0]?.fromTs ?? 0n;
  const hi = coverage[coverage.length - 1]?.toTs ?? 0n;
  const counts = new Array<number>(buckets).fill(0);
  const span = hi > lo ? hi - lo : 1n;
  for (const s of segs) {
    const mid = s.firstTs + (s.lastTs - s.firstTs) / 2n;
    const b = Math.min(buckets - 1, Number(((mid - lo) * BigInt(buckets)) / span));
    if (b >= 0) counts[b] = (counts[b] ?? 0) + s.records;
  }
  return {
    coverage, gaps: chain.gaps, missingSerials: chain.missingSerials, bases,
    markers: markers.filter((m) => m.kind !== 'base-started' && m.kind !== 'base-complete').map((m) => {
      const inside = restorable.some((r) => r.fromSeq <= m.seq && m.seq <= r.toSeq);
      return { seq: m.seq, ts: m.ts, kind: m.kind, name: m.name, restorable: inside, why: inside ? null : refusal(rows, m.seq) };
    }),
    restorable, rate: { fromTs: lo, toTs: hi, buckets: counts },
  };
}
