import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { JshipError, isJshipError } from '../core/errors.js';
import { HolderWatch } from './control-client.js';
import { settlesWithin } from '../core/deferred.js';
import { ControlServer } from './control-server.js';
import type { JournalGroup, OpenGroupOptions } from '../journal/journal-group.js';
import { siteStatus, type SiteStatus } from './site-status.js';
import type { SiteMetrics } from './metrics.js';
import { MetricsEndpoint } from '../io/metrics-endpoint.js';
import { Throttle } from '../io/throttle.js';
import { openSiteGroup } from './consumers.js';
import { acknowledge } from '../tape/acknowledge.js';
import { absoluteRequest, checkParity, checkZstdLevel, runExport, type ExportRequest } from '../tape/export-request.js';
import type { S3Settings } from '../s3/s3-store.js';
import { isS3Url } from '../s3/s3-url.js';
import { checkBlockSize } from '../tape/blocked-output.js';
import { eventLine, type EventLog } from '../core/events.js';
import { groupBackend } from '../nbd/group-backend.js';
import { NbdServer, type Listen, type ServerStats } from '../nbd/server.js';
import { LinkPrimary, type LinkPrimaryOptions } from '../link/link-primary.js';
import { forgetSecondary } from '../link/forget.js';

export const NBD_SOCKET = 'nbd.sock';
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** What a stop had to do. */
export interface StopReport {
  /** The timeout ran out: busy connections were closed. */
  forced: boolean;
  connectionsClosed: number;
  controlClosed: number;
}



export interface ServeOptions extends OpenGroupOptions {
  /** Default: a Unix socket GROUP_DIR/nbd.sock. */
  listen?: Listen;
  /** false: no NBD (the owner serves the link and the control socket only). */
  nbd?: boolean;
  /** The primary's end of the direct link, run by the same process. */
  link?: LinkPrimaryOptions;
  /** Serve Prometheus metrics (GET /metrics) here. */
  metrics?: Listen;
  /** Every event of the owner: the group's, NBD clients', the link's, exports'. Default: a line each on stderr. */
  log?: EventLog;
}

export interface ServedExport {
  name: string;
  size: number;
  uri: string;
}

/** What `jship status` gets from a serving owner: the site's status and the NBD server's figures. */
export interface ServingStatus extends SiteStatus {
  serve: ServerStats | null;
  /** Answered by a one-shot command that holds the group (one-shot-control.ts), not by a server. */
  oneShot?: true;
}

/**
 * A journal group served over NBD, one export per volume, with the control
 * socket through which mark/status/export/ack reach the owner. `stop`
 * finishes what clients have sent, flushes and closes the group.
 */
export class Serving {
  readonly group: JournalGroup;
  readonly nbd: NbdServer | null;
  readonly link: LinkPrimary | null;
  readonly control: ControlServer;
  readonly exports: readonly ServedExport[];
  /** Where /metrics is served (null: not asked for). */
  readonly metrics: MetricsEndpoint | null;
  #stopping: Promise<StopReport> | undefined;

  private constructor(group: JournalGroup, nbd: NbdServer | null, link: LinkPrimary | null, control: ControlServer, exports: ServedExport[], metrics: MetricsEndpoint | null) {
    this.metrics = metrics;
    this.group = group;
    this.nbd = nbd;
    this.link = link;
    this.control = control;
    this.exports = exports;
  }

  static async start(dir: string, opts: ServeOptions = {}): Promise<Serving> {
    const log: EventLog = opts.log ?? ((e) => process.stderr.write(`${new Date().toISOString()} ${eventLine(e)}\n`));
    // NBD needs read-after-reply, which range order gives; the PVOL write need not delay the reply.
    const group = await openWhenFree(dir, { replyAfterJournal: true, onEvent: log, ...opts }, log);
    const nbd = opts.nbd === false ? null : new NbdServer(groupBackend(group), log);
    let link: LinkPrimary | null = null;
    // prom-client is loaded only when metrics are asked for.
    const metrics = opts.metrics ? new (await import('./metrics.js')).SiteMetrics(group, nbd, () => link) : null;
    // The link's sessions share one throttle, so that `jship bwlimit` can change it while they run.
    const linkOpts = opts.link ? { ...opts.link, throttle: opts.link.throttle ?? new Throttle(null) } : undefined;
    const handlers = controlHandlers(group, nbd, metrics, linkOpts?.throttle ?? null, log);
    const control = new ControlServer(handlers, log);
    const endpoint = metrics ? new MetricsEndpoint(metrics) : null;
    try {
      await control.listen(group.dir, group.config.groupId);
      let exports: ServedExport[] = [];
      if (nbd) {
        const listen = opts.listen ?? { socket: join(group.dir, NBD_SOCKET) };
        const where = await nbd.listen(listen);
        exports = group.volumes.map((v) => ({
          name: v.name,
          size: v.size,
          uri: 'socket' in listen ? `nbd+unix:///${encodeURIComponent(v.name)}?socket=${where}` : `nbd://${where}/${encodeURIComponent(v.name)}`,
        }));
      }
      if (linkOpts) link = await LinkPrimary.start(group, linkOpts);
      if (endpoint && opts.metrics) await endpoint.listen(opts.metrics);
      return new Serving(group, nbd, link, control, exports, endpoint);
    } catch (e) {
      await link?.stop().catch(() => undefined);
      await endpoint?.close().catch(() => undefined);
      await nbd?.close().catch(() => undefined);
      await control.close().catch(() => undefined);
      await group.close();
      throw e;
    }
  }

  /**
   * Stops accepting, lets in-flight requests and control operations finish,
   * flushes and closes the group — within `timeoutMs`: past it, connections
   * still busy (a client that does not read its replies, an export still
   * running) are closed, and the group is flushed and closed all the same.
   */
  stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<StopReport> {
    this.#stopping ??= (async () => {
      const report: StopReport = { forced: false, connectionsClosed: 0, controlClosed: 0 };
      try {
        this.group.refuseWaitingWrites();
        const graceful = (async () => {
          await this.link?.stop();
          await this.nbd?.close();
          await this.control.close();
          await this.metrics?.close();
        })();
        graceful.catch(() => undefined);
        if (!(await settlesWithin(graceful, timeoutMs))) {
          report.forced = true;
          report.connectionsClosed = this.nbd?.abort() ?? 0;
          report.controlClosed = this.control.abort();
          // What was running (an export) fails on the closed group below and removes what it began.
          await settlesWithin(graceful, timeoutMs);
        }
      } finally {
        await this.group.close();
      }
      return report;
    })();
    return this.#stopping;
  }
}

function controlHandlers(group: JournalGroup, nbd: NbdServer | null, metrics: SiteMetrics | null, linkThrottle: Throttle | null, log: EventLog): ConstructorParameters<typeof ControlServer>[0] {
  const exporting = new Set<Throttle>();
  return {
    status: async (): Promise<ServingStatus> => ({ ...(await siteStatus(group)), serve: nbd?.stats() ?? null }),
    mark: async (args) => group.mark(stringArg(args, 'name')),
    export: async (args, progress) => {
      const req = exportArgs(args);
      const throttle = new Throttle(req.bwlimit ?? null);
      exporting.add(throttle);
      const run = (): ReturnType<typeof runExport> => runExport(group, req, progress, undefined, throttle);
      const started = Date.now();
      log({ event: 'export-started', to: req.to, base: req.base === true });
      try {
        const r = await (metrics ? metrics.countExport(run) : run());
        log({ event: 'export-done', to: req.to, tapes: r.tapes.map((t) => t.serial), records: r.records, tapeBytes: r.tapeBytes, seconds: (Date.now() - started) / 1000, journalOut: r.journalOut });
        return r;
      } catch (e) {
        log({ event: 'export-failed', to: req.to, error: (e as Error).message, seconds: (Date.now() - started) / 1000 });
        throw e;
      } finally {
        exporting.delete(throttle);
      }
    },
    // A new bandwidth limit for what runs now: exports in progress and the link's sessions.
    bwlimit: async (args) => {
      const rate = args.rate;
      if (rate !== null && (typeof rate !== 'number' || !Number.isSafeInteger(rate) || rate < 1024)) {
        throw new JshipError('CONTROL_PROTOCOL', 'control argument "rate" is not null or a number of bytes per second (at least 1024)', { hint: 'use the jship CLI, which sends it' });
      }
      for (const t of exporting) t.limit.setRate(rate);
      linkThrottle?.limit.setRate(rate);
      return { exports: exporting.size, link: linkThrottle !== null, rate };
    },
    ack: async (args) => acknowledge(group, stringArg(args, 'text'), stringArg(args, 'file')),
    linkForget: async (args) => {
      const r = await forgetSecondary(group, stringArg(args, 'name'));
      log({ event: 'secondary-forgotten', name: r.name, confirmedSeq: r.confirmedSeq, journalOut: r.journalOut });
      return r;
    },
    scan: async () => {
      if (!nbd) throw new JshipError('GROUP_LOCKED', `${group.dir} is owned by a running jship link process`, { hint: 'stop it to scan the PVOLs' });
      throw new JshipError('GROUP_LOCKED', `${group.dir} is being served over NBD: every write through it is journaled already, and a scan would journal it again`, {
        hint: 'stop jship serve to scan changes made to the PVOLs outside it (there should be none while it serves)',
      });
    },
  };
}

function stringArg(args: Record<string, unknown>, name: string): string {
  const v = args[name];
  if (typeof v !== 'string') throw new JshipError('CONTROL_PROTOCOL', `control argument "${name}" is missing or not a string`, { hint: 'use the jship CLI, which sends it' });
  return v;
}

/** The caller's store settings: endpoint, path style, region, credentials (all optional, all checked). */
function s3Arg(v: unknown): S3Settings {
  const s3 = v as Record<string, unknown>;
  const str = (x: unknown): boolean => x === undefined || (typeof x === 'string' && x.length > 0 && x.length <= 4096);
  const c = s3?.credentials as Record<string, unknown> | undefined;
  const credsOk = c === undefined || (typeof c === 'object' && c !== null && typeof c.accessKeyId === 'string' && typeof c.secretAccessKey === 'string' && str(c.accessKeyId) && str(c.secretAccessKey) && str(c.sessionToken));
  if (s3 === null || typeof s3 !== 'object' || !str(s3.endpoint) || !str(s3.region) || (s3.pathStyle !== undefined && typeof s3.pathStyle !== 'boolean') || !credsOk) {
    throw new JshipError('CONTROL_PROTOCOL', 'control argument "s3" is not {endpoint?, pathStyle?, region?, credentials?}', { hint: 'use the jship CLI, which sends it' });
  }
  return {
    ...(s3.endpoint !== undefined ? { endpoint: s3.endpoint as string } : {}),
    ...(s3.pathStyle !== undefined ? { pathStyle: s3.pathStyle as boolean } : {}),
    ...(s3.region !== undefined ? { region: s3.region as string } : {}),
    ...(c ? { credentials: { accessKeyId: c.accessKeyId as string, secretAccessKey: c.secretAccessKey as string, ...(c.sessionToken !== undefined ? { sessionToken: c.sessionToken as string } : {}) } } : {}),
  };
}

function exportArgs(args: Record<string, unknown>): ExportRequest {
  const req: ExportRequest = { to: stringArg(args, 'to') };
  for (const k of ['base', 'keepUntilAck', 'purgeOnClose', 'allowEmpty', 'allowPlaintext', 'verifyAfterWrite'] as const) {
    const v = args[k];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw new JshipError('CONTROL_PROTOCOL', `control argument "${k}" is not a boolean`, { hint: 'use the jship CLI, which sends it' });
    req[k] = v;
  }
  if (args.waitMs !== undefined) {
    if (typeof args.waitMs !== 'number' || !Number.isSafeInteger(args.waitMs) || args.waitMs < 0) throw new JshipError('CONTROL_PROTOCOL', 'control argument "waitMs" is not a number of milliseconds', { hint: 'use the jship CLI, which sends it' });
    req.waitMs = args.waitMs;
  }
  if (args.mediaSize !== undefined) {
    if (typeof args.mediaSize !== 'number' || !Number.isSafeInteger(args.mediaSize) || args.mediaSize <= 0) {
      throw new JshipError('CONTROL_PROTOCOL', 'control argument "mediaSize" is not a positive integer', { hint: 'use the jship CLI, which sends it' });
    }
    req.mediaSize = args.mediaSize;
  }
  if (args.bwlimit !== undefined) {
    if (typeof args.bwlimit !== 'number' || !Number.isSafeInteger(args.bwlimit) || args.bwlimit < 1024) throw new JshipError('CONTROL_PROTOCOL', 'control argument "bwlimit" is not a number of bytes per second (at least 1024)', { hint: 'use the jship CLI, which sends it' });
    req.bwlimit = args.bwlimit;
  }
  if (args.blockSize !== undefined) {
    if (typeof args.blockSize !== 'number') throw new JshipError('CONTROL_PROTOCOL', 'control argument "blockSize" is not a number of bytes', { hint: 'use the jship CLI, which sends it' });
    req.blockSize = checkBlockSize(args.blockSize);
  }
  if (args.requireMount !== undefined) req.requireMount = stringArg(args, 'requireMount');
  if (args.parity !== undefined) {
    if (typeof args.parity !== 'number') throw new JshipError('CONTROL_PROTOCOL', 'control argument "parity" is not a percentage', { hint: 'use the jship CLI, which sends it' });
    req.parity = checkParity(args.parity);
  }
  if (args.zstdLevel !== undefined) {
    if (typeof args.zstdLevel !== 'number') throw new JshipError('CONTROL_PROTOCOL', 'control argument "zstdLevel" is not a number', { hint: 'use the jship CLI, which sends it' });
    req.zstdLevel = checkZstdLevel(args.zstdLevel);
  }
  if (args.nextMedia !== undefined) req.nextMedia = stringArg(args, 'nextMedia');
  if (args.resyncFor !== undefined) req.resyncFor = stringArg(args, 'resyncFor');
  if (args.encryptKey !== undefined) req.encryptKey = stringArg(args, 'encryptKey');
  if (args.s3 !== undefined) req.s3 = s3Arg(args.s3);
  if (isS3Url(req.to) && !req.s3?.credentials) {
    throw new JshipError('CONTROL_PROTOCOL', 'an export to s3:// through the owner needs the caller\'s credentials in the request', {
      hint: 'use the jship CLI, which sends those of its own environment: the server never lends its own',
    });
  }
  // Relative paths would be taken from the server's working directory, not the caller's.
  const absolute = absoluteRequest(req);
  if (absolute.to !== req.to || absolute.encryptKey !== req.encryptKey) {
    throw new JshipError('CONTROL_PROTOCOL', 'control export paths must be absolute', { hint: 'use the jship CLI, which sends them so' });
  }
  return req;
}

/**
 * Opens the group for a server. A one-shot command that holds it (an
 * export, a scan: it ends) is waited for, said once in the log: refused, a
 * server started during a nightly export failed, and a service manager
 * that restarts it every few seconds gives up after a few tries. A server
 * of the group already, or a process that does not answer, is refused,
 * saying which (the lock's own hint, "talk to it instead", is no use here).
 */
async function openWhenFree(dir: string, open: OpenGroupOptions, log: EventLog): Promise<JournalGroup> {
  let told = false;
  const holders = new HolderWatch();
  for (;;) {
    try {
      return await openSiteGroup(dir, open);
    } catch (e) {
      if (!isJshipError(e, 'GROUP_LOCKED')) throw e;
      const details = e.details;
      // One on its way out still counts as a one-shot (HolderWatch).
      const holder = await holders.ask(dir, e);
      if (!holder) throw e;
      if (holder.kind === 'silent') throw new JshipError('GROUP_LOCKED', e.message, { hint: 'that process holds the group without answering (a program using jship as a library, or a command that could not make its control socket): stop it, or start jship serve once it has ended', details });
      if (holder.kind === 'server') throw new JshipError('GROUP_LOCKED', `${e.message}: a server of the group${holder.status.serve ? `, on ${holder.status.serve.listening}` : ''}`, { hint: 'one server per group: use that one, or stop it first', details });
      if (!told) log({ event: 'waiting-for-group', pid: details.pid ?? null, why: 'a one-shot command (an export, a scan, …) holds the group: serving starts when it ends' });
      told = true;
      await sleep(500);
    }
  }
}
