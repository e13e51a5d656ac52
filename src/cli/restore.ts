import type { Command } from 'commander';
import { proofText } from '../replica/prove.js';
import { JshipError } from '../core/errors.js';
import { formatSize } from '../core/sizes.js';
import { formatTime, parseTime } from '../core/time.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { restoreReplica } from '../replica/restore.js';
import { tapeRefText } from '../replica/catalog.js';
import type { PointSpec } from '../replica/restore-plan.js';
import { onInterrupt } from './signals.js';
import { takeFramePool } from './early-pool.js';
import { addReplicaWait, replicaWait } from './waiting.js';
import { emit, lazyProgress, type CommonOptions } from './output.js';

interface RestoreCliOptions extends CommonOptions, KeyCliOptions {
  wait?: string;
  volume: string[];
  mode?: string;
  target: string[];
  until?: string;
  exclusive?: boolean;
  marker?: string;
  seq?: string;
  inconsistent?: boolean;
  dryRun?: boolean;
  coalesce: boolean;
  force?: boolean;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function pointFromOptions(o: { until?: string; exclusive?: boolean; marker?: string; seq?: string }): PointSpec {
  const given = [o.until, o.marker, o.seq].filter((x) => x !== undefined).length;
  if (given > 1) throw new JshipError('USAGE', 'give one of --until, --marker and --seq', { hint: 'a restore has one point' });
  if (o.exclusive && o.until === undefined) throw new JshipError('USAGE', '--exclusive goes with --until', { hint: 'e.g. --until 2026-11-24T23:00:00Z --exclusive' });
  if (o.until !== undefined) return { kind: 'until', ts: parseTime(o.until), exclusive: o.exclusive ?? false };
  if (o.marker !== undefined) return { kind: 'marker', name: o.marker };
  if (o.seq !== undefined) {
    if (!/^\d{1,20}$/.test(o.seq) || BigInt(o.seq) === 0n) throw new JshipError('USAGE', `--seq "${o.seq}" is not a sequence number`, { hint: 'a positive whole number' });
    return { kind: 'seq', seq: BigInt(o.seq) };
  }
  return { kind: 'latest' };
}

/** --until [--exclusive] | --marker | --seq: the point (see pointFromOptions). */
export function withPointOptions(cmd: Command): Command {
  return cmd
    .option('--until <TIME>', 'the state at TIME: every record stamped up to and including TIME (ISO 8601 with a zone, or @SECONDS)')
    .option('--exclusive', 'with --until: leave out records stamped exactly TIME')
    .option('--marker <NAME>', 'the state at a named restore point')
    .option('--seq <N>', 'the state after record N');
}

function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new JshipError('USAGE', `--mode ${text} is not a file mode`, { hint: 'give three octal digits, e.g. --mode 0640' });
  return Number.parseInt(text, 8);
}

export function registerRestore(program: Command): void {
  withKeyOptions(withPointOptions(addReplicaWait(program
    .command('restore')
    .description('rebuild volumes as they were at a point: into the SVOLs (default, whole group) or into files or devices')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--volume <NAME>', 'restore this volume (repeat; needs --target)', collect, [])
    .option('--target <[NAME=]PATH>', 'where to: a file or block device per volume (NAME=PATH, repeat), a bare PATH for one volume, or a directory (DIR/NAME.img)', collect, [])
    .option('--inconsistent', 'allow a point before the base completed (a partial image; files and devices only)')
    .option('--dry-run', 'print the plan (tapes, records, bytes, the time the result represents) and change nothing')
    .option('--no-coalesce', 'replay every record in order instead of writing each surviving extent once')
    .option('--force', 'replace existing target files (only once the restore is complete)')
    .option('--mode <OCTAL>', 'file mode of restored image files (default 0600: they hold what the PVOLs hold)')
    .option('--json', 'print one JSON object'))))
    .action(async (dir: string, opts: RestoreCliOptions) => {
      const point = pointFromOptions(opts);
      const wait = replicaWait('restore', opts.wait);
      const targets = opts.target.map((t) => {
        const m = /^([A-Za-z0-9][A-Za-z0-9._-]{0,62})=(.+)$/.exec(t);
        return m ? { volume: m[1] as string, path: m[2] as string } : { path: t };
      });
      const keys = await keyRing(opts);
      const bar = lazyProgress(opts, 'restoring', 'segments');
      const stopGuard = onInterrupt('restore', () => 'new files stay under temporary names (removed by the next restore, or renamed by it if this one was renaming them); an SVOL or device being written stays marked "restore in progress" until a restore to at least the same point completes. Rerun the same command', opts.json === true);
      const pool = await takeFramePool();
      let r;
      try {
        r = await restoreReplica(dir, {
          pool,
          point, targets, volumes: opts.volume,
          ...(opts.dryRun ? { dryRun: true } : {}),
          ...(opts.inconsistent ? { inconsistent: true } : {}),
          coalesce: opts.coalesce,
          ...(opts.force ? { force: true } : {}),
          ...(opts.mode !== undefined ? { mode: parseMode(opts.mode) } : {}),
          ...(keys ? { keys } : {}),
          ...(wait ? { wait } : {}),
          onProgress: bar.onProgress,
        });
      } finally {
        bar.stop();
        stopGuard();
        await pool.close();
      }
      const p = r.plan;
      emit(opts, { ...r, plan: { ...p, time: formatTime(p.ts) } }, () => r.nothingToDo ? [`the SVOLs are already at seq ${p.seq} (${p.point}, ${formatTime(p.ts)}): nothing to do`] : [
        `${r.dryRun ? 'plan: restore' : 'restored'} ${r.targets.map((t) => `${t.volume} → ${t.path}`).join(', ')}`,
        `  point: ${p.point}; the result is the state at ${formatTime(p.ts)}${p.inconsistent ? ' (INCONSISTENT: before the base completed)' : ''}`,
        `  ${p.incrementalFrom !== null ? `from the SVOLs at seq ${p.incrementalFrom}` : `from base ${p.bases[0]?.baseId ?? '?'}`}${p.bases.length > (p.incrementalFrom !== null ? 0 : 1) ? ` with resync bases ${p.bases.filter((b) => b.scope === 'resync').map((b) => b.baseId).join(', ')}` : ''}: ${p.records} records in ${p.segments} segments of tapes ${p.tapes.map(tapeRefText).join(', ') || '-'}`,
        ...(r.dryRun ? [`  tapes to have at hand (${formatSize(p.pull.reduce((n, t) => n + t.bytes, 0))} of segments at most):`, ...p.pull.map((t) => `    ${t.file}  ${t.segments} segment${t.segments === 1 ? '' : 's'}, ${formatSize(t.bytes)}`)] : []),
        ...(r.svolsRebuilt ? [`  rebuilt from the base, not brought forward: ${r.svolsRebuilt}`] : []),
        ...(r.finishedInterrupted ? ['  this restore had been interrupted between renaming its files: the renames are finished, every target now holds this point'] : []),
        ...(r.dryRun || r.finishedInterrupted ? [] : [`  ${r.coalesced ? 'coalesced' : 'replayed in order'}: ${formatSize(r.bytesWritten)} written, ${r.segmentsRead} of ${p.segments} segments read`]),
        ...(r.dryRun || r.finishedInterrupted ? [] : [`  ${r.proof ? proofText(r.proof) : 'not proved: the primary made no digest of this point (only restore points and base completions have one)'}`]),
      ]);
    });
}
