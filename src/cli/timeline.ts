import type { Command } from 'commander';
import { formatTime } from '../core/time.js';
import { Replica } from '../replica/replica.js';
import { buildTimeline, type Timeline } from '../replica/timeline.js';
import { readReplicaState } from '../replica/replica-state.js';
import { changedSvols } from '../replica/svol-files.js';
import { readDrills, type DrillRecord } from '../replica/drill-log.js';
import { emit, type CommonOptions } from './output.js';

const WIDTH = 60;
const SPARK = '▁▂▃▄▅▆▇█';

/** The picture: a time axis with coverage (█), gaps (·), base completions (◆), markers (▲), drilled points (✓ passed, ✗ failed) and the write rate. */
export function drawTimeline(t: Timeline, drills: readonly DrillRecord[] = []): string[] {
  const lo = t.rate.fromTs;
  const hi = t.rate.toTs > lo ? t.rate.toTs : lo + 1n;
  const col = (ts: bigint): number => Math.max(0, Math.min(WIDTH - 1, Number(((ts - lo) * BigInt(WIDTH - 1)) / (hi - lo))));
  const axis = new Array<string>(WIDTH).fill('·');
  for (const c of t.coverage) for (let i = col(c.fromTs); i <= col(c.toTs); i++) axis[i] = '█';
  const marks = new Array<string>(WIDTH).fill(' ');
  for (const b of t.bases) if (b.completeTs !== null) marks[col(b.completeTs)] = '◆';
  for (const m of t.markers) if (m.kind === 'restore-point') marks[col(m.ts)] = '▲';
  // A point's newest drill tells: passed or failed.
  for (const d of drills) marks[col(BigInt(d.ts))] = d.ok ? '✓' : '✗';
  const max = Math.max(1, ...t.rate.buckets);
  const spark = t.rate.buckets.map((n) => (n === 0 ? ' ' : SPARK[Math.min(SPARK.length - 1, Math.floor((n / max) * (SPARK.length - 1)))]));
  const sparkLine = Array.from({ length: WIDTH }, (_v, i) => spark[Math.floor((i * spark.length) / WIDTH)] ?? ' ').join('');
  return [
    `  ${formatTime(lo)}${' '.repeat(Math.max(1, WIDTH - 60))}→ ${formatTime(hi)}`,
    `  |${axis.join('')}|  coverage (█ held, · missing)`,
    `  |${marks.join('')}|  ◆ base complete  ▲ restore point${drills.length ? '  ✓ ✗ drill' : ''}`,
    `  |${sparkLine}|  write rate`,
  ];
}

export function registerTimeline(program: Command): void {
  program
    .command('timeline')
    .description('what can be restored: base completions, coverage, gaps, restore points, write rate')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, opts: CommonOptions) => {
      const replica = await Replica.view(dir);
      let t: Timeline;
      try {
        await replica.checkCatalogued();
        t = buildTimeline(replica.catalog);
      } finally {
        await replica.close();
      }
      const state = await readReplicaState(replica.dir);
      const { restoredSeq, restoredTs, inProgress } = state.svol;
      const changed = restoredSeq !== '0' ? await changedSvols(replica.dir, replica.config.volumes.map((v) => v.name), state.svol) : null;
      const drills = await readDrills(replica.dir);
      emit(opts, { ...t, svol: { restoredSeq, restoredTs, inProgress, changed }, drills: drills.map((d) => ({ point: d.point, seq: d.seq, ts: d.ts, ok: d.ok, code: d.code, command: d.command, finishedAt: d.finishedAt, durationMs: d.durationMs })) }, () => [
        ...(t.restorable.length === 0
          ? ['restorable: nothing yet (no full base complete with the records after it held)']
          : t.restorable.map((r, i) => `${i === 0 ? 'restorable:' : '           '} ${formatTime(r.fromTs)} .. ${formatTime(r.toTs)} (seq ${r.fromSeq}..${r.toSeq})`)),
        ...drawTimeline(t, drills),
        'coverage:',
        ...t.coverage.map((c) => `  seq ${c.fromSeq}..${c.toSeq}  ${formatTime(c.fromTs)} .. ${formatTime(c.toTs)}`),
        ...t.gaps.map((g) => `  GAP seq ${g.from}..${g.to}${g.serials.length ? ` (tapes ${g.serials.join(', ')})` : ''}`),
        ...(t.missingSerials.length ? [`tapes not yet imported: ${t.missingSerials.join(', ')}`] : []),
        'bases:',
        ...t.bases.map((b) => b.baseId === 0n ? `  full base 0: the volumes as jship init created them, all zeros (${formatTime(b.startedTs)}), before seq 1` : `  ${b.scope} base ${b.baseId}: started ${formatTime(b.startedTs)}, ${b.completeTs !== null ? `complete ${formatTime(b.completeTs)} (seq ${b.completeSeq})` : 'NOT COMPLETE in the records held'}`),
        'markers:',
        ...t.markers.map((m) => `  seq ${m.seq}  ${formatTime(m.ts)}  ${m.kind}${m.name ? ` "${m.name}"` : ''}${m.restorable ? '' : `  NOT RESTORABLE: ${m.why ?? 'outside every restorable range'}`}`),
        ...(drills.length ? ['drills (tested points):', ...drills.map((d) => `  seq ${d.seq}  ${formatTime(BigInt(d.ts))}  ${d.ok ? 'passed' : 'FAILED'}  ${d.finishedAt}  ${d.point}  \`${d.command}\``)] : []),
        `SVOLs: ${restoredSeq === '0' ? 'never restored' : `at seq ${restoredSeq}${restoredTs ? ` (${formatTime(BigInt(restoredTs))})` : ''}`}${inProgress ? `; a restore to seq ${inProgress.seq} is IN PROGRESS (not a consistent point)` : ''}${changed ? `; CHANGED outside jship since (${changed}): the next restore rebuilds them from the base` : ''}`,
      ]);
    });
}
