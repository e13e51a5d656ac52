import { Throttle } from '../io/throttle.js';
import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatSize, parseRate, parseSize } from '../core/sizes.js';
import type { Listen } from '../nbd/server.js';
import { DEFAULT_STOP_TIMEOUT_MS, Serving, type ServeOptions } from '../owner/serving.js';
import { parseDuration } from '../core/time.js';
import { emit, eventLog, toJson, type CommonOptions } from './output.js';
import { untilStopSignal } from './signals.js';
import type { NbdServer } from '../nbd/server.js';
import { parseListenAddress, parseHostPort, type HostPort } from '../io/sockets.js';
import { pushTargets } from './link.js';
import { ZSTD_LEVEL_HELP, parseZstdLevel } from './zstd-level.js';
import { readLinkKey } from '../link/link-tls.js';
import { groupPaths } from '../journal/group-files.js';

interface ServeCliOptions extends CommonOptions {
  stopTimeout?: string;
  socket?: string;
  listen?: string;
  linkListen?: string;
  linkTo?: string;
  linkCandidates?: string;
  linkFailoverAfter?: string;
  linkFailbackAfter?: string;
  metrics?: string;
  linkBwlimit?: string;
  linkZstdLevel?: string;
  psk?: string;
  checkpointInterval?: string;
  checkpointBytes?: string;
  pvolLag?: string;
}

/** PORT (loopback), HOST:PORT or [IPV6]:PORT; port 0 picks a free one (printed when ready). */
export function parseListen(text: string): HostPort {
  return parseHostPort(text, '--listen');
}

/** --checkpoint-interval, --checkpoint-bytes, --pvol-lag: how far the PVOLs may trail the journal. */
function pvolOptions(opts: ServeCliOptions): Pick<ServeOptions, 'checkpointIntervalMs' | 'checkpointBytes' | 'pvolLagBytes'> {
  const out: Pick<ServeOptions, 'checkpointIntervalMs' | 'checkpointBytes' | 'pvolLagBytes'> = {};
  if (opts.checkpointInterval !== undefined) {
    out.checkpointIntervalMs = opts.checkpointInterval === '0' ? 0 : Number(parseDuration(opts.checkpointInterval, '--checkpoint-interval') / 1_000_000n);
  }
  if (opts.checkpointBytes !== undefined) out.checkpointBytes = atLeast(parseSize(opts.checkpointBytes, '--checkpoint-bytes'), 1024 * 1024, '--checkpoint-bytes');
  if (opts.pvolLag !== undefined) out.pvolLagBytes = atLeast(parseSize(opts.pvolLag, '--pvol-lag'), 1024 * 1024, '--pvol-lag');
  return out;
}

function atLeast(n: number, min: number, flag: string): number {
  if (n < min) throw new JshipError('USAGE', `${flag} ${n} is below ${min} bytes`, { hint: `give ${flag} 1M or more` });
  return n;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve the volumes of a journal group over NBD (one export per volume): every write is journaled before it is acknowledged')
    .argument('<GROUP_DIR>', 'the journal group')
    .option('--socket <PATH>', 'listen on this Unix socket (default: GROUP_DIR/nbd.sock)')
    .option('--listen <[HOST:]PORT>', 'listen on TCP instead (loopback unless HOST is given)')
    .option('--link-listen <HOST:PORT>', 'also serve the direct link: secondaries pull from here (jship link pull)')
    .option('--link-to <HOST:PORT>', 'also push the journal to a secondary running jship link receive')
    .option('--link-candidates <FILE>', 'push to the first reachable of these instead (see jship link push)')
    .option('--link-failover-after <DURATION>', 'with --link-candidates: move on after this long unreachable (default 60s)')
    .option('--link-failback-after <DURATION>', 'with --link-candidates: while on a lower-priority candidate, try the higher ones this often and return to the first that answers (default: never)')
    .option('--psk <FILE>', 'the link key (default: GROUP_DIR/link.key)')
    .option('--link-bwlimit <RATE>', 'send the link\'s tapes at most this fast (20M is 20 MiB/s; change it while serving with jship bwlimit)')
    .option('--link-zstd-level <N>', `zstd level of the link's tapes: ${ZSTD_LEVEL_HELP}`)
    .option('--metrics <[HOST:]PORT|PATH>', 'serve Prometheus metrics at http://HOST:PORT/metrics (loopback unless HOST is given), or on a Unix socket PATH')
    .option('--checkpoint-interval <DURATION>', 'make the PVOLs durable and advance the applied pointer this often (default 5s; 0 = only by bytes, before purges and at stop)')
    .option('--checkpoint-bytes <SIZE>', 'also after this many bytes journaled since the last checkpoint: at most this much is written again after a crash (default 256M)')
    .option('--pvol-lag <SIZE>', 'replied writes whose PVOL writes wait in memory, at most (default 64M); past it writers wait')
    .option('--stop-timeout <DURATION>', 'on SIGTERM/SIGINT, how long requests in flight may take before busy connections are closed (default 10s)')
    .option('--json', 'JSON lines on standard output, one per event: ready, each log event, stopped')
    .action(async (dir: string, opts: ServeCliOptions) => {
      const stopTimeoutMs = opts.stopTimeout !== undefined ? Number(parseDuration(opts.stopTimeout, '--stop-timeout') / 1_000_000n) : DEFAULT_STOP_TIMEOUT_MS;
      if (opts.socket !== undefined && opts.listen !== undefined) {
        throw new JshipError('USAGE', '--socket and --listen exclude each other', { hint: 'serve on a Unix socket or on TCP, not both' });
      }
      const listen: Listen | undefined = opts.listen !== undefined ? parseListen(opts.listen) : opts.socket !== undefined ? { socket: opts.socket } : undefined;
      // Under --json every event is a JSON line on stdout (ready, each event, stopped); else one readable line each on stderr.
      const log = eventLog(opts);
      if (opts.linkTo !== undefined && opts.linkCandidates !== undefined) throw new JshipError('USAGE', '--link-to and --link-candidates exclude each other', { hint: 'push to one secondary, or to the first reachable candidate' });
      const pushing = opts.linkTo !== undefined || opts.linkCandidates !== undefined;
      const linking = opts.linkListen !== undefined || pushing;
      // The link's settings without a link would be dropped in silence: refused instead.
      const stray = ([
        ['--link-bwlimit', opts.linkBwlimit], ['--link-zstd-level', opts.linkZstdLevel], ['--psk', opts.psk],
        ['--link-failover-after', opts.linkFailoverAfter], ['--link-failback-after', opts.linkFailbackAfter],
      ] as const).find(([, v]) => v !== undefined);
      if (!linking && stray) throw new JshipError('USAGE', `${stray[0]} is a setting of the direct link, and no link is served`, { hint: 'add --link-listen HOST:PORT, --link-to HOST:PORT or --link-candidates FILE, or leave it out' });
      const linkRate = opts.linkBwlimit !== undefined ? parseRate(opts.linkBwlimit, '--link-bwlimit') : null;
      const link = linking ? {
        ...(opts.linkListen !== undefined ? { listen: parseHostPort(opts.linkListen, '--link-listen') } : {}),
        ...(pushing ? await pushTargets(opts.linkTo, opts.linkCandidates, opts.linkFailoverAfter, 'link-', opts.linkFailbackAfter) : {}),
        key: await readLinkKey(opts.psk ?? groupPaths(dir).linkKey),
        ...(linkRate !== null ? { throttle: new Throttle(linkRate) } : {}),
        ...(opts.linkZstdLevel !== undefined ? { zstdLevel: parseZstdLevel(opts.linkZstdLevel, '--link-zstd-level') } : {}),
        log,
      } : undefined;
      const metrics: Listen | undefined = opts.metrics === undefined ? undefined : parseListenAddress(opts.metrics, '--metrics');
      const serving = await Serving.start(dir, { ...(listen ? { listen } : {}), ...(link ? { link } : {}), ...(metrics ? { metrics } : {}), ...pvolOptions(opts), log });
      const nbd = serving.nbd as NbdServer;
      const stopped = untilStopSignal('serve');
      emit(opts, { event: 'ready', ready: true, pid: process.pid, listening: nbd.address, link: serving.link?.address ?? null, metrics: serving.metrics?.where ?? null, group: serving.group.dir, exports: serving.exports }, () => [
        `serving group ${serving.group.config.groupId} on ${nbd.address} (pid ${process.pid})`,
        ...(serving.link?.address ? [`  direct link: secondaries pull from ${serving.link.address} (TLS-PSK)`] : []),
        ...(serving.metrics ? [`  metrics: ${serving.metrics.where.includes('/') ? `GET /metrics on the Unix socket ${serving.metrics.where}` : `http://${serving.metrics.where}/metrics`}`] : []),
        ...(pushing ? [`  direct link: pushing to ${opts.linkTo ?? `the candidates in ${opts.linkCandidates}`}`] : []),
        ...serving.exports.map((e) => `  ${e.name}  ${formatSize(e.size)}  ${e.uri}`),
        'every write is journaled before it is acknowledged; stop with SIGTERM or Ctrl-C',
      ]);
      const sig = await stopped;
      log({ event: 'stop-requested', signal: sig, timeoutSeconds: stopTimeoutMs / 1000, doing: 'finishing requests in flight, flushing' });
      const report = await serving.stop(stopTimeoutMs);
      if (report.forced) log({ event: 'stop-forced', afterSeconds: stopTimeoutMs / 1000, nbdClosed: report.connectionsClosed, controlClosed: report.controlClosed, note: 'requests not answered were not acknowledged' });
      const after = nbd.stats().totals;
      if (opts.json) process.stdout.write(`${toJson({ event: 'stopped', stopped: true, signal: sig, ...after, ...report })}\n`);
      else process.stdout.write(`stopped (${sig}): ${after.connections} connections, ${after.requests} requests, ${formatSize(after.bytesWritten)} written${report.forced ? `; ${report.connectionsClosed + report.controlClosed} busy connections closed after ${`${stopTimeoutMs / 1000} s`}` : ''}; journal flushed, group closed\n`);
    });
}
