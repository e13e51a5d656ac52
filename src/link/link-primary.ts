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
  retryMs?: number;
  maxTapeBytes?: number;
  timeoutMs?: number;
  /** Paces the tape bytes of every session (its rate may change while they run). */
  throttle?: Throttle;
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
    const pool = new FramePool();
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
    while (!this.#stopped) {
      const t = targets[current] as Candidate;
      try {
        const ch = await dial(t, o.key, group.config.groupId, Math.min(10_000, failoverMs));
        this.#pushChannel = ch;
        downSince = null;
        o.log({ event: 'connected', to: t.address });
        try {
          await session(ch, (n) => names.set(current, n));
        } finally {
          this.#pushChannel = undefined;
          ch.close();
        }
      } catch (e) {
        if (this.#stopped) break;
        o.log({ event: isJshipError(e, 'LINK_UNREACHABLE') ? 'unreachable' : 'disconnected', to: t.address, ...(isJshipError(e) ? { code: e.code } : {}), why: (e as Error).message });
        downSince ??= Date.now();
        if (targets.length > 1 && Date.now() - downSince >= failoverMs) {
          const next = (current + 1) % targets.length;
          const left = names.get(current);
          // The site left behind stops pinning the journal; if it comes back it resumes from its own position.
          if (left) await updateRegistry(group.dir, (r) => { const s = r.secondaries.find((x) => x.name === left); if (s) s.detached = true; });
          await group.purgeSecured();
          o.log({ event: 'failover', from: t.address, to: (targets[next] as Candidate).address, downSeconds: Math.round((Date.now() - downSince) / 1000), detached: left ?? null });
          current = next;
          downSince = null;
          continue;
        }
        await new Promise<void>((r) => {
          const timer = setTimeout(r, retryMs);
          this.#wake = () => { clearTimeout(timer); r(); };
        });
      }
    }
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
