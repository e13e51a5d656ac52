import type { Throttle } from '../io/throttle.js';
import { JshipError, isJshipError } from '../core/errors.js';
import { FramePool } from '../tape/frame-pool.js';
import type { Channel } from './channel.js';
import { dial } from './dial.js';
import type { HostPort } from '../io/sockets.js';
import { LinkServer } from './link-server.js';
import type { LinkStatus } from './messages.js';
import type { LinkLog } from './primary-session.js';
import { heldPosition, pause, runSecondary, type BaseProgress, type SecondaryOptions } from './secondary-session.js';

export interface LinkSecondaryOptions {
  replicaDir: string;
  name: string;
  key: Buffer;
  log: LinkLog;
  apply?: { delayNs: bigint };
  timeoutMs?: number;
  lockWaitMs?: number;
  /** Take tape bytes in no faster than this (a bandwidth limit; the link's flow control slows the primary). */
  throttle?: Throttle;
  /** A base arriving: see SecondaryOptions.onBaseProgress. */
  onBaseProgress?: (p: BaseProgress) => void;
  /** Aborted: stop (see SecondaryOptions.signal); a pull also ends its connection and returns. */
  signal?: AbortSignal;
}

/** Errors a retry cannot mend: the wrong key, group, position or arguments. */
const FATAL = new Set(['LINK_AUTH', 'LINK_FOREIGN', 'LINK_POSITION', 'LINK_VERSION', 'LINK_DIVERGED', 'USAGE', 'REPLICA_BAD', 'REPLICA_NOT_EMPTY', 'REPLICA_DIVERGED', 'TAPE_FOREIGN', 'TAPE_DIVERGED']);
/** Refusals by the primary that trying again does not change: it was fenced (another site was promoted), or the lineages differ. */
const FATAL_AT_PEER = new Set(['GROUP_FENCED', 'LINK_DIVERGED']);

function isFatal(e: unknown): boolean {
  return !isJshipError(e) || FATAL.has(e.code) || (e.code === 'LINK_REFUSED' && FATAL_AT_PEER.has(String(e.details.peerCode)));
}

function sessionOptions(o: LinkSecondaryOptions, pool: FramePool, mode: 'pull' | 'push', once: boolean): SecondaryOptions {
  return {
    replicaDir: o.replicaDir, name: o.name, mode, pool, log: o.log, once,
    ...(o.apply ? { apply: o.apply } : {}),
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.lockWaitMs !== undefined ? { lockWaitMs: o.lockWaitMs } : {}),
    ...(o.throttle ? { throttle: o.throttle } : {}),
    ...(o.onBaseProgress ? { onBaseProgress: o.onBaseProgress } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  };
}

/**
 * Pull mode: dial the primary, store what it sends, and dial again after a
 * broken connection (backing off up to 30 s), from the replica's own
 * position. `once`: stop when caught up (and fail on the first error).
 * Returns when `signal` is aborted (the connection is ended: a tape half
 * received is dropped and sent again next time).
 */
export async function runPull(o: LinkSecondaryOptions & { from: HostPort; once?: boolean }): Promise<{ tapes: number; records: number; status: LinkStatus | null }> {
  const pool = new FramePool();
  let tapes = 0;
  let records = 0;
  let backoff = 500;
  const stopped = (): boolean => o.signal?.aborted === true;
  try {
    for (;;) {
      try {
        const pos = await heldPosition(o.replicaDir, o);
        const ch = await dial(o.from, o.key, pos.groupId ?? 'new');
        const end = (): void => ch.destroy();
        o.signal?.addEventListener('abort', end, { once: true });
        try {
          if (stopped()) end();
          const r = await runSecondary(ch, sessionOptions(o, pool, 'pull', o.once === true));
          return { tapes: tapes + r.tapes, records: records + r.records, status: r.status };
        } finally {
          o.signal?.removeEventListener('abort', end);
          ch.close();
        }
      } catch (e) {
        if (stopped()) return { tapes, records, status: null };
        if (o.once || isFatal(e)) throw e;
        o.log({ event: isJshipError(e, 'LINK_UNREACHABLE') ? 'unreachable' : 'disconnected', code: isJshipError(e) ? e.code : null, why: (e as Error).message, retryInMs: backoff });
        await pause(backoff, o.signal);
        if (stopped()) return { tapes, records, status: null };
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  } finally {
    await pool.close();
  }
}

/**
 * Push mode, the secondary's end: listen for the primary (one at a time)
 * and store what it sends. The replica is created from the first primary's
 * hello when the directory is new or empty.
 */
export class LinkReceiver {
  readonly address: string;
  readonly #server: LinkServer;
  readonly #pool: FramePool;

  readonly #stopping: AbortController;

  private constructor(server: LinkServer, address: string, pool: FramePool, stopping: AbortController) {
    this.#server = server;
    this.address = address;
    this.#pool = pool;
    this.#stopping = stopping;
  }

  static async start(o: LinkSecondaryOptions & { listen: HostPort }): Promise<LinkReceiver> {
    // May wait for the replica (another process holds it) until o.signal.
    const pos = await heldPosition(o.replicaDir, o);
    const pool = new FramePool();
    // Aborted by stop(): a session waiting for the replica (a restore holds it) ends instead of holding the stop.
    const stopping = new AbortController();
    const so = { ...o, signal: stopping.signal };
    let groupId = pos.groupId;
    let busy = false;
    const session = async (ch: Channel): Promise<void> => {
      if (busy) {
        await ch.refuse(new JshipError('LINK_REFUSED', 'this receiver is busy with another primary', { hint: 'one primary pushes to a replica at a time' }));
        return;
      }
      busy = true;
      try {
        await runSecondary(ch, sessionOptions(so, pool, 'push', false));
      } finally {
        busy = false;
        // A new replica was created by this session: from now on only its group is let in.
        groupId ??= (await heldPosition(o.replicaDir, so).catch(() => ({ groupId: null }))).groupId;
      }
    };
    const server = new LinkServer({ key: o.key, identityOk: (id) => (groupId === null ? /^[0-9a-f-]{36}$/.test(id) : id === groupId), session, log: o.log });
    try {
      const address = await server.listen(o.listen.host, o.listen.port);
      return new LinkReceiver(server, address, pool, stopping);
    } catch (e) {
      await pool.close();
      throw e;
    }
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#server.close();
    await this.#pool.close();
  }
}
