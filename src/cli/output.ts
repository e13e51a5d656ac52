import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import { formatSize } from '../core/sizes.js';
import { eventLine, type EventLog } from '../core/events.js';
import { formatDuration } from '../core/check.js';
import { SmoothedRate } from '../core/smoothed-rate.js';
import { toJson } from '../core/json-shape.js';
import { cliError } from './flags.js';

/** cli-progress, loaded only when a bar is shown (on a terminal): 6 ms of every other command's start. */
const require = createRequire(import.meta.url);
const loadProgress = (): typeof CliProgress => require('cli-progress') as typeof CliProgress;

/** Options every verb takes. */
export interface CommonOptions {
  json?: boolean;
}

export { toJson } from '../core/json-shape.js';

/** Prints the verb's result: one JSON object with --json, else the human lines. */
export function emit(opts: CommonOptions, json: unknown, human: () => string[]): void {
  if (opts.json) process.stdout.write(`${toJson(json)}\n`);
  else for (const line of human()) process.stdout.write(`${line}\n`);
}

/**
 * Where a long-running verb's events go: one JSON line each on stdout (with
 * `at`, when it was logged) under --json, else one readable line each on stderr.
 */
export function eventLog(opts: CommonOptions): EventLog {
  return opts.json
    ? (e) => { process.stdout.write(`${toJson({ ...e, at: new Date().toISOString() })}\n`); }
    : (e) => { process.stderr.write(`${new Date().toISOString()} ${eventLine(e)}\n`); };
}

/** Prints an error (stdout JSON with --json, stderr text otherwise) and sets the exit code. */
export function reportError(e: unknown, json: boolean): void {
  const err = cliError(e);
  process.exitCode = err.isUsage ? 2 : 1;
  if (json) {
    process.stdout.write(`${toJson({ error: err.toJSON() })}\n`);
  } else {
    process.stderr.write(`jship: ${err.message}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    if (process.env.JSHIP_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  }
}

export interface Progress {
  update(done: number): void;
  stop(): void;
}

/** What a progress bar counts. */
export type ProgressUnit = 'bytes' | 'segments';

const count = (n: number, unit: ProgressUnit): string => (unit === 'bytes' ? formatSize(n) : `${Math.round(n)}`);

/**
 * A progress bar on a TTY (done/total in its unit, a smoothed rate, an ETA
 * from it; both blank for the first second): also for uploads to and
 * downloads from a store; silent under --json or when stdout is not a terminal.
 */
export function progress(opts: CommonOptions, label: string, total: number, unit: ProgressUnit = 'bytes'): Progress {
  if (opts.json || !process.stdout.isTTY || total <= 0) return { update: () => undefined, stop: () => undefined };
  const cliProgress = loadProgress();
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {percentage}% {doneText}/{totalText}${unit === 'segments' ? ' segments' : ''} {rateText}ETA {etaText}`,
    hideCursor: true,
    clearOnComplete: true,
  }, cliProgress.Presets.shades_classic);
  const rate = new SmoothedRate();
  const show = (done: number): Record<string, string> => {
    const now = Date.now();
    rate.sample(done, now);
    const r = rate.rate(now);
    const eta = rate.eta(total, now);
    return {
      doneText: count(done, unit), totalText: count(total, unit),
      rateText: r === null ? '' : unit === 'bytes' ? `${formatSize(Math.round(r))}/s ` : `${r.toFixed(r < 10 ? 1 : 0)}/s `,
      etaText: eta === null ? '…' : formatDuration(eta),
    };
  };
  bar.start(total, 0, show(0));
  return {
    update: (done) => bar.update(done, show(done)),
    stop: () => bar.stop(),
  };
}

/** A progress bar made on the first report, when the total is known; `stop` is safe either way. */
export function lazyProgress(opts: CommonOptions, label: string, unit: ProgressUnit = 'bytes'): { onProgress: (done: number, total: number) => void; stop: () => void } {
  let bar: Progress | undefined;
  return {
    onProgress: (done, total) => {
      bar ??= progress(opts, label, total, unit);
      bar.update(done);
    },
    stop: () => bar?.stop(),
  };
}

/** Lays out rows of cells in aligned columns. */
export function table(rows: string[][], indent = '  '): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}
