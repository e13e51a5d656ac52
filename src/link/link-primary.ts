import { isJshipError } from '../core/errors.js';
import type { Throttle } from '../io/throttle.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { FramePool } from '../tape/frame-pool.js';
import type { Candidate } from './candidates.js';
import type { Channel } from './channel.js';
import { dial } from './dial.js';
import type { HostPort } from '../io/sockets.js';
import { LinkServer } from './link-server.js';
import { runPrimary, type LinkLog } from './primary-session.js';
import { updateRegistry } from './registry.js';

export interface LinkPrimaryOptions {
  key: Buffer;
  log: LinkLog;
  /** Serve secondaries that pull (link serve). */
  listen?: HostPort;
  /** Push to the first reachable of these (link push); one entry for a plain --to. */
  push?: Candidate[];
  /** How long the current push target may stay unreachable before the next candidate takes over. */
  failoverMs?: number;
  /**
   * While pushing to a lower-priority candidate: try the higher ones this
   * often, and return to the first that answers (it resumes from its own
   * position). Unset: stay where the failover went.
   */
  failbackMs?: number;
  retryMs?: number;
  maxTapeBytes?: number;
  timeoutMs?: number;
  /** Paces the tape bytes of every session (its rate may change while they run). */
  throttle?: Throttle;
  /** zstd's level for the link tapes (checkZstdLevel); default DEFAULT_ZSTD_LEVEL. */
  zstdLevel?: number;
}

/**
 * The primary's end of the direct link inside the process that owns the
 * group: a listener for pulling secondaries, a push loop with failover, or
 * both. Sessions share one frame pool.
 */
export class LinkPrimary {
  readonly address: string | null;
  readonly #server: LinkServer | undefined;
  readonly #pool: FramePool;
  #stopped = false;
  #pushChannel: Channel | undefined;
  #pushDone: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;

  /** Link sessions running now: pulling secondaries served, and the push connection. */
  get sessions(): number {
    return (this.#server?.sessionCount ?? 0) + (this.#pushChannel ? 1 : 0);
  }

  private constructor(server: LinkServer | undefined, address: string | null, pool: FramePool) {
    this.#server = server;
    this.address = address;
    this.#pool = pool;
  }

  static async start(group: JournalGroup, o: LinkPrimaryOptions): Promise<LinkPrimary> {
    const pool = new FramePool(o.zstdLevel !== undefined ? { level: o.zstdLevel } : {});
    let server: LinkServer | undefined;
    let address: string | null = null;
    const session = (ch: Channel, onName?: (n: string) => void): Promise<void> => runPrimary(ch, {
      group, pool, log: o.log,
      ...(o.maxTapeBytes !== undefined ? { maxTapeBytes: o.maxTapeBytes } : {}),
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.throttle ? { throttle: o.throttle } : {}),
      ...(onName ? { onName } : {}),
    });
    try {
      if (o.listen) {
        const gid = group.config.groupId;
        server = new LinkServer({ key: o.key, identityOk: (id) => id === gid || id === 'new', session: (ch) => session(ch), log: o.log });
        address = await server.listen(o.listen.host, o.listen.port);
      }
    } catch (e) {
      await pool.close();
      throw e;
    }
    const lp = new LinkPrimary(server, address, pool);
    if (o.push && o.push.length > 0) lp.#pushDone = lp.#pushLoop(group, o, o.push, session);
    return lp;
  }

  async #pushLoop(group: JournalGroup, o: LinkPrimaryOptions, targets: Candidate[], session: (ch: Channel, onName?: (n: string) => void) => Promise<void>): Promise<void> {
    const failoverMs = o.failoverMs ?? 60_000;
    const retryMs = o.retryMs ?? 2000;
    let current = 0;
    let downSince: number | null = null;
    const names = new Map<number, string>();
    /** A higher-priority candidate that answered while another was served: the next session's channel. */
    let back: { index: number; ch: Channel } | undefined;
    // A site a failover left behind keeps pinning the journal (a short outage loses no restore point)
    // until the journal is nearly full: then it is released.
    const release = setInterval(() => {
      void this.#releaseStandbys(group, o).catch(() => undefined);
    }, 1000);
    release.unref();
    /** The site at `index` is no longer served: it stays registered, pinning, as a standby. */
    const leave = async (index: number): Promise<string | null> => {
      const left = names.get(index) ?? null;
      if (left) await updateRegistry(group.dir, (r) => { const s = r.secondaries.find((x) => x.name === left); if (s && !s.detached) s.standby = true; });
      return left;
    };
    try {
      while (!this.#stopped) {
        const t = targets[current] as Candidate;
        let failback: NodeJS.Timeout | undefined;
        try {
          const ch = back?.ch ?? await dial(t, o.key, group.config.groupId, Math.min(10_000, failoverMs));
          back = undefined;
          this.#pushChannel = ch;
          downSince = null;
          o.log({ event: 'connected', to: t.address });
          if (o.failbackMs !== undefined && current > 0) failback = this.#probeHigher(group, o, targets, current, o.failbackMs, (index, probe) => {
            back = { index, ch: probe };
            ch.destroy();
          });
          try {
            await session(ch, (n) => names.set(current, n));
          } finally {
            this.#pushChannel = undefined;
            ch.close();
          }
        } catch (e) {
          if (this.#stopped) break;
          if (isJshipError(e, 'GROUP_FENCED')) {
            // Another site was promoted: there is nothing left to push (the group takes no writes).
            o.log({ event: 'stopped', to: t.address, code: e.code, why: e.message });
            break;
          }
          if (!back) {
            o.log({ event: isJshipError(e, 'LINK_UNREACHABLE') ? 'unreachable' : 'disconnected', to: t.address, ...(isJshipError(e) ? { code: e.code } : {}), why: (e as Error).message });
            downSince ??= Date.now();
            if (targets.length > 1 && Date.now() - downSince >= failoverMs) {
              const next = (current + 1) % targets.length;
              const left = await leave(current);
              o.log({ event: 'failover', from: t.address, to: (targets[next] as Candidate).address, downSeconds: Math.round((Date.now() - downSince) / 1000), standby: left });
              current = next;
              downSince = null;
              continue;
            }
            await new Promise<void>((r) => {
              const timer = setTimeout(r, retryMs);
              this.#wake = () => { clearTimeout(timer); r(); };
            });
          }
        } finally {
          clearInterval(failback);
        }
        if (back && !this.#stopped) {
          const left = await leave(current);
          o.log({ event: 'failback', from: t.address, to: (targets[back.index] as Candidate).address, standby: left });
          current = back.index;
        }
      }
    } finally {
      clearInterval(release);
      back?.ch.destroy();
    }
  }

  /** Every `everyMs`, dials the candidates before `current` in priority order; the first that answers is handed to `found` (once). */
  #probeHigher(group: JournalGroup, o: LinkPrimaryOptions, targets: Candidate[], current: number, everyMs: number, found: (index: number, ch: Channel) => void): NodeJS.Timeout {
    let busy = false;
    let done = false;
    const timer = setInterval(() => {
      if (busy || done || this.#stopped) return;
      busy = true;
      void (async () => {
        for (let i = 0; i < current && !done; i++) {
          const ch = await dial(targets[i] as Candidate, o.key, group.config.groupId, Math.min(10_000, everyMs)).catch(() => undefined);
          if (!ch) continue;
          if (done || this.#stopped) {
            ch.destroy();
            return;
          }
          done = true;
          found(i, ch);
        }
      })().finally(() => { busy = false; });
    }, everyMs);
    timer.unref();
    return timer;
  }

  /** Standby secondaries stop pinning the journal once it is nearly full (or full, or suspended). */
  async #releaseStandbys(group: JournalGroup, o: LinkPrimaryOptions): Promise<void> {
    const state = group.state;
    if (state !== 'nearly-full' && state !== 'full' && state !== 'suspended') return;
    const released = await updateRegistry(group.dir, (r) => r.secondaries.filter((s) => s.standby && !s.detached).map((s) => {
      s.detached = true;
      delete s.standby;
      return s.name;
    }));
    if (released.length === 0) return;
    const out = await group.purgeSecured();
    o.log({ event: 'released', secondaries: released, why: `the journal is ${state}: a failover left ${released.length > 1 ? 'them' : 'it'} behind; ${released.length > 1 ? 'they resume' : 'it resumes'} with a new base if ${released.length > 1 ? 'they come' : 'it comes'} back`, journalOut: out });
  }

  /** Ends every session (secondaries resume from their confirmed positions) and stops. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pushChannel?.destroy();
    this.#wake?.();
    await this.#pushDone;
    await this.#server?.close();
    await this.#pool.close();
  }
}
