import { MetricsEndpoint } from '../io/metrics-endpoint.js';
import { Throttle } from '../io/throttle.js';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { parseDuration } from '../core/time.js';
import { parseRate, parseSize } from '../core/sizes.js';
import { onGroup } from '../owner/on-group.js';
import { groupPaths } from '../journal/group-files.js';
import { parseCandidates, type Candidate } from '../link/candidates.js';
import { parseListenAddress, parseHostPort } from '../io/sockets.js';
import { forgetSecondary } from '../link/forget.js';
import { LinkReceiver, runPull, type LinkSecondaryOptions } from '../link/link-secondary.js';
import { readLinkKey } from '../link/link-tls.js';
import { NAME } from '../link/messages.js';
import type { LinkEvent } from '../link/primary-session.js';
import { Serving } from '../owner/serving.js';
import { heldPosition, type BaseProgress } from '../link/secondary-session.js';
import { emit, eventLog, progress, type CommonOptions, type Progress } from './output.js';
import type { EventLog } from '../core/events.js';
import { onInterrupt, untilStopSignal } from './signals.js';
import { ZSTD_LEVEL_HELP, parseZstdLevel } from './zstd-level.js';

interface LinkCliOptions extends CommonOptions {
  listen?: string;
  to?: string;
  from?: string;
  candidates?: string;
  failoverAfter?: string;
  failbackAfter?: string;
  psk?: string;
  name?: string;
  apply?: boolean;
  applyDelay?: string;
  once?: boolean;
  maxTape?: string;
  zstdLevel?: string;
  bwlimit?: string;
  metrics?: string;
}

function required(v: string | undefined, flag: string, verb: string): string {
  if (v === undefined) throw new JshipError('USAGE', `jship link ${verb} needs ${flag}`, { hint: `run jship link ${verb} --help` });
  return v;
}

/** The replica's name at its primary: --name, else the one it has, else HOST-DIRNAME. */
async function secondaryName(dir: string, given: string | undefined, waits: { log: (e: LinkEvent) => void; signal?: AbortSignal }): Promise<string> {
  if (given !== undefined && !NAME.test(given)) throw new JshipError('USAGE', `--name ${JSON.stringify(given)} is not a secondary name`, { hint: 'letters, digits, . _ : - (up to 64), starting with a letter or digit' });
  const pos = await heldPosition(dir, waits);
  // Checked before any connection: the primary knows this replica by the name it has.
  if (given !== undefined && pos.linkName !== null && pos.linkName !== given) {
    throw new JshipError('USAGE', `this replica is secondary "${pos.linkName}" at its primary, not "${given}"`, { hint: `leave out --name, or give --name ${pos.linkName}` });
  }
  if (given !== undefined) return given;
  if (pos.linkName) return pos.linkName;
  return `${hostname()}-${basename(resolve(dir))}`.replace(/[^A-Za-z0-9._:-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64) || 'secondary';
}

/** `signal`: a stop while it waits for the replica (another process holds it) ends the wait (see stopControl). */
async function secondaryOptions(dir: string, opts: LinkCliOptions, verb: string, signal?: AbortSignal): Promise<LinkSecondaryOptions> {
  const log = eventLog(opts);
  const key = await readLinkKey(required(opts.psk, '--psk FILE (the primary\'s GROUP_DIR/link.key)', verb));
  if (opts.applyDelay !== undefined && !opts.apply) throw new JshipError('USAGE', '--apply-delay needs --apply', { hint: 'add --apply to keep the SVOLs restored' });
  const delayNs = opts.applyDelay !== undefined ? parseDuration(opts.applyDelay, '--apply-delay') : 0n;
  const waits = { log, ...(signal ? { signal } : {}) };
  return { replicaDir: resolve(dir), name: await secondaryName(dir, opts.name, waits), key, ...waits, ...(opts.apply ? { apply: { delayNs } } : {}), ...throttleOf(opts), onBaseProgress: baseProgress(opts, log) };
}

/**
 * A base arriving over the link, shown: a `base-progress` event at every
 * tenth of the volumes' bytes (JSON lines, or log lines), and a bar on a TTY.
 */
function baseProgress(opts: LinkCliOptions, log: EventLog): (p: BaseProgress) => void {
  let shown = { baseId: -1n, tenth: -1 };
  let bar: Progress | undefined;
  return (p) => {
    if (p.baseId !== shown.baseId) {
      bar?.stop();
      bar = progress(opts, `base ${p.baseId}`, p.totalBytes);
      shown = { baseId: p.baseId, tenth: -1 };
    }
    bar?.update(p.bytes);
    const tenth = Math.floor((p.bytes * 10) / Math.max(1, p.totalBytes));
    if (tenth === shown.tenth) return;
    shown.tenth = tenth;
    log({ event: 'base-progress', baseId: p.baseId, bytes: p.bytes, totalBytes: p.totalBytes, percent: tenth * 10 });
    if (tenth >= 10) bar?.stop();
  };
}

/** --bwlimit RATE as a throttle (none for off). */
function throttleOf(opts: LinkCliOptions): { throttle?: Throttle } {
  const rate = opts.bwlimit !== undefined ? parseRate(opts.bwlimit) : null;
  return rate === null ? {} : { throttle: new Throttle(rate) };
}

const BWLIMIT_HELP = 'move at most RATE bytes per second of tapes (rclone\'s meaning: 20M is 20 MiB/s, a bare number KiB/s, off)';

/**
 * SIGTERM/SIGINT, taken from the start of a verb that runs until stopped: a
 * receiver that is still waiting for its replica (another process, a long
 * restore, holds it) stops at once and says so, rather than dying of the
 * signal's default action. `signal` is aborted at the first one.
 */
function stopControl(verb: string): { signal: AbortSignal; stopped: Promise<string> } {
  const c = new AbortController();
  const stopped = untilStopSignal(`link ${verb}`);
  void stopped.then(() => c.abort());
  return { signal: c.signal, stopped };
}

/** `start()`, unless a stop came while it waited for the replica: then null, once the stop was said. */
async function startOrStopped<T>(opts: CommonOptions, stop: { signal: AbortSignal; stopped: Promise<string> }, start: () => Promise<T>): Promise<T | null> {
  try {
    return await start();
  } catch (e) {
    if (!stop.signal.aborted) throw e;
    const sig = await stop.stopped;
    emit(opts, { event: 'stopped', stopped: true, signal: sig }, () => [`stopped (${sig}) while waiting for the replica, which another process holds; nothing was received`]);
    return null;
  }
}

/** Runs until `stopped` (stopControl), then stops `stop` and says so. */
async function runUntilSignal(opts: CommonOptions, stopped: Promise<string>, ready: object, human: string[], stop: () => Promise<void>): Promise<void> {
  emit(opts, { event: 'ready', ready: true, pid: process.pid, ...ready }, () => human);
  const sig = await stopped;
  await stop();
  emit(opts, { event: 'stopped', stopped: true, signal: sig }, () => [`stopped (${sig}); every peer resumes from its confirmed position`]);
}

/** The options of a secondary's verbs (pull, receive). */
function secondaryFlags(cmd: Command): Command {
  return cmd
    .option('--psk <FILE>', 'the link key (a copy of the primary\'s GROUP_DIR/link.key)')
    .option('--name <NAME>', 'this replica\'s name at the primary (default: HOST-DIRNAME, kept in replica.json)')
    .option('--apply', 'keep the SVOLs restored up to the newest record')
    .option('--apply-delay <DURATION>', 'with --apply: stay this far behind (e.g. 15m), a guard against shipping a mistake')
    .option('--bwlimit <RATE>', BWLIMIT_HELP)
    .option('--metrics <[HOST:]PORT|PATH>', 'serve Prometheus metrics (tapes and records received, pointers, apply lag) at http://HOST:PORT/metrics or on a Unix socket PATH');
}

/** --metrics: the secondary's figures, read from its events, served over HTTP until `close`. */
async function secondaryMetrics(opts: LinkCliOptions, o: LinkSecondaryOptions): Promise<MetricsEndpoint | null> {
  if (opts.metrics === undefined) return null;
  const at = parseListenAddress(opts.metrics, '--metrics');
  // prom-client is loaded only when metrics are asked for.
  const { SecondaryMetrics } = await import('../link/secondary-metrics.js');
  const metrics = new SecondaryMetrics();
  const log = o.log;
  o.log = (e) => { metrics.observe(e); log(e); };
  const endpoint = new MetricsEndpoint(metrics);
  await endpoint.listen(at);
  return endpoint;
}

export function registerLink(program: Command): void {
  const link = program
    .command('link')
    .description('direct link: move the journal to secondary sites over TCP (TLS with a pre-shared key), pulled or pushed');

  link
    .command('serve')
    .description('primary: let secondaries pull the journal (jship serve --link-listen does the same next to NBD)')
    .argument('<GROUP_DIR>', 'the journal group')
    .option('--listen <HOST:PORT>', 'where secondaries connect')
    .option('--psk <FILE>', 'the link key (default: GROUP_DIR/link.key)')
    .option('--max-tape <SIZE>', MAX_TAPE_HELP)
    .option('--zstd-level <N>', `zstd level of the link tapes: ${ZSTD_LEVEL_HELP}`)
    .option('--bwlimit <RATE>', BWLIMIT_HELP)
    .option('--json', 'JSON lines on standard output, one per event')
    .action(async (dir: string, opts: LinkCliOptions) => {
      const listen = parseHostPort(required(opts.listen, '--listen HOST:PORT', 'serve'), '--listen');
      const key = await readLinkKey(opts.psk ?? groupPaths(dir).linkKey);
      const { stopped } = stopControl('serve');
      const serving = await Serving.start(dir, { nbd: false, link: { listen, key, log: eventLog(opts), ...maxTape(opts), ...zstdLevel(opts), ...throttleOf(opts) }, log: eventLog(opts) });
      const address = serving.link?.address ?? '';
      await runUntilSignal(opts, stopped, { listening: address, group: serving.group.dir, groupId: serving.group.config.groupId },
        [`serving the journal of group ${serving.group.config.groupId} to secondaries on ${address} (pid ${process.pid}); stop with SIGTERM or Ctrl-C`],
        async () => { await serving.stop(); });
    });

  link
    .command('push')
    .description('primary: push the journal to a secondary running jship link receive, or to the first reachable of --candidates')
    .argument('<GROUP_DIR>', 'the journal group')
    .option('--to <HOST:PORT>', 'the receiving secondary')
    .option('--candidates <FILE>', 'JSON list of {"address": "HOST:PORT", "priority": N}: failover in priority order')
    .option('--failover-after <DURATION>', 'move to the next candidate when the current one is unreachable this long (default 60s)')
    .option('--failback-after <DURATION>', 'while on a lower-priority candidate, try the higher ones this often and return to the first that answers (default: never)')
    .option('--psk <FILE>', 'the link key (default: GROUP_DIR/link.key)')
    .option('--max-tape <SIZE>', MAX_TAPE_HELP)
    .option('--zstd-level <N>', `zstd level of the link tapes: ${ZSTD_LEVEL_HELP}`)
    .option('--bwlimit <RATE>', BWLIMIT_HELP)
    .option('--json', 'JSON lines on standard output, one per event')
    .action(async (dir: string, opts: LinkCliOptions) => {
      if ((opts.to === undefined) === (opts.candidates === undefined)) throw new JshipError('USAGE', 'jship link push needs either --to HOST:PORT or --candidates FILE', { hint: 'run jship link push --help' });
      const targets = await pushTargets(opts.to, opts.candidates, opts.failoverAfter, '', opts.failbackAfter);
      const push = targets.push;
      const key = await readLinkKey(opts.psk ?? groupPaths(dir).linkKey);
      const { stopped } = stopControl('push');
      const serving = await Serving.start(dir, { nbd: false, link: { ...targets, key, log: eventLog(opts), ...maxTape(opts), ...zstdLevel(opts), ...throttleOf(opts) }, log: eventLog(opts) });
      await runUntilSignal(opts, stopped, { to: push.map((c) => c.address), group: serving.group.dir, groupId: serving.group.config.groupId },
        [`pushing the journal of group ${serving.group.config.groupId} to ${push.map((c) => c.address).join(', then ')} (pid ${process.pid}); stop with SIGTERM or Ctrl-C`],
        async () => { await serving.stop(); });
    });

  secondaryFlags(link
    .command('pull')
    .description('secondary: pull the journal from a primary running jship link serve into a replica (created when the directory is new or empty)')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--from <HOST:PORT>', 'the primary')
    .option('--once', 'stop when caught up (else run until SIGTERM, reconnecting after failures)')
    .option('--json', 'JSON lines on standard output, one per event'))
    .action(async (dir: string, opts: LinkCliOptions) => {
      const from = parseHostPort(required(opts.from, '--from HOST:PORT', 'pull'), '--from');
      if (opts.once) {
        // From the start: the pull may wait for its replica first (another process holds it).
        const stopGuard = onInterrupt('link pull', () => 'the link tapes confirmed so far are stored; the one being received is dropped and sent again by the next pull. Rerun the same command', opts.json === true);
        const o = await secondaryOptions(dir, opts, 'pull');
        const metrics = await secondaryMetrics(opts, o);
        const r = await runPull({ ...o, from, once: true }).finally(async () => { stopGuard(); await metrics?.close(); });
        emit(opts, { event: 'caught-up', tapes: r.tapes, records: r.records, primary: r.status }, () => [
          `caught up: ${r.tapes} link tapes, ${r.records} records stored; primary's last seq ${r.status?.lastSeq ?? 'none'}`,
          `"${o.name}" stays registered at the primary and holds its journal back until the next pull; on the primary, jship link forget GROUP_DIR ${o.name} lets go of it`,
        ]);
        return;
      }
      const stop = stopControl('pull');
      const o = await startOrStopped(opts, stop, () => secondaryOptions(dir, opts, 'pull', stop.signal));
      if (!o) return;
      const metrics = await secondaryMetrics(opts, o);
      const run = runPull({ ...o, from });
      emit(opts, { event: 'ready', ready: true, pid: process.pid, from: opts.from, name: o.name, metrics: metrics?.where ?? null }, () => [
        `pulling from ${opts.from} as "${o.name}" into ${o.replicaDir} (pid ${process.pid}); stop with SIGTERM or Ctrl-C`,
        ...(metrics ? [`  metrics: ${metrics.where}`] : []),
      ]);
      // runPull returns only when stopped, or fails on an error no retry mends (a wrong key, group or position).
      const sig = await Promise.race([stop.stopped, run.then(() => null)]);
      await run;
      await metrics?.close();
      // What is stored and confirmed stays; a tape half received is dropped and sent again next time.
      emit(opts, { event: 'stopped', stopped: true, signal: sig }, () => [`stopped (${sig}); the next pull resumes from the last confirmed tape`]);
    });

  secondaryFlags(link
    .command('receive')
    .description('secondary: accept the journal a primary pushes (jship link push) into a replica (created when the directory is new or empty)')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--listen <HOST:PORT>', 'where the primary connects')
    .option('--json', 'JSON lines on standard output, one per event'))
    .action(async (dir: string, opts: LinkCliOptions) => {
      const listen = parseHostPort(required(opts.listen, '--listen HOST:PORT', 'receive'), '--listen');
      const stop = stopControl('receive');
      const o = await startOrStopped(opts, stop, () => secondaryOptions(dir, opts, 'receive', stop.signal));
      if (!o) return;
      const metrics = await secondaryMetrics(opts, o);
      const r = await startOrStopped(opts, stop, () => LinkReceiver.start({ ...o, listen }));
      if (!r) {
        await metrics?.close();
        return;
      }
      await runUntilSignal(opts, stop.stopped, { listening: r.address, name: o.name, metrics: metrics?.where ?? null },
        [`receiving into ${o.replicaDir} as "${o.name}" on ${r.address} (pid ${process.pid}); stop with SIGTERM or Ctrl-C`, ...(metrics ? [`  metrics: ${metrics.where}`] : [])],
        async () => { await r.stop(); await metrics?.close(); });
    });

  link
    .command('forget')
    .description('primary: unregister a secondary, so that it no longer pins the journal (it needs a new replica to come back)')
    .argument('<GROUP_DIR>', 'the journal group')
    .argument('<NAME>', 'the secondary (jship status lists them)')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, name: string, opts: CommonOptions) => {
      const r = await onGroup(dir, (g) => forgetSecondary(g, name), { op: 'linkForget', args: { name } });
      emit(opts, r, () => [`secondary "${name}" unregistered (it had confirmed seq ${r.confirmedSeq}); journal-out is now seq ${r.journalOut}`]);
    });
}

/** The push targets of --to or --candidates (flags named with `prefix`, e.g. "link-" for jship serve). */
export async function pushTargets(to: string | undefined, candidates: string | undefined, failoverAfter: string | undefined, prefix: string, failbackAfter?: string): Promise<{ push: Candidate[]; failoverMs: number; failbackMs?: number }> {
  const push: Candidate[] = to !== undefined
    ? [{ ...parseHostPort(to, `--${prefix}to`), address: to, priority: 1 }]
    : parseCandidates(await fsp.readFile(candidates as string, 'utf8').catch((e: Error) => {
      throw new JshipError('USAGE', `--${prefix}candidates ${candidates}: ${e.message}`, { hint: 'name a readable JSON file' });
    }), candidates as string);
  const failoverMs = failoverAfter !== undefined ? Number(parseDuration(failoverAfter, `--${prefix}failover-after`) / 1_000_000n) : 60_000;
  if (failbackAfter === undefined || failbackAfter === 'never') return { push, failoverMs };
  const failbackMs = Number(parseDuration(failbackAfter, `--${prefix}failback-after`) / 1_000_000n);
  if (failbackMs < 100 || push.length < 2) {
    throw new JshipError('USAGE', `--${prefix}failback-after ${failbackAfter}: ${push.length < 2 ? 'it goes with several candidates' : 'give at least 100ms'}`, { hint: `e.g. --${prefix}candidates FILE --${prefix}failback-after 5m` });
  }
  return { push, failoverMs, failbackMs };
}

const MAX_TAPE_HELP = 'records per link tape, at most (default 256M; a sixteenth of the journal while it is nearly full and written to)';

function maxTape(opts: LinkCliOptions): { maxTapeBytes?: number } {
  return opts.maxTape === undefined ? {} : { maxTapeBytes: parseSize(opts.maxTape, '--max-tape') };
}

function zstdLevel(opts: LinkCliOptions): { zstdLevel?: number } {
  return opts.zstdLevel === undefined ? {} : { zstdLevel: parseZstdLevel(opts.zstdLevel, '--zstd-level') };
}
