import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { isJshipError } from '../core/errors.js';
import { Channel } from './channel.js';
import { formatHostPort } from '../io/sockets.js';
import { handshakeFailure, serverOptions } from './link-tls.js';
import type { LinkLog } from './primary-session.js';

export interface LinkServerOptions {
  key: Buffer;
  /** Whether a client's PSK identity (its group id, or "new" for a replica not created yet) is acceptable. */
  identityOk: (identity: string) => boolean;
  /** Runs one authenticated connection; its error is logged, told to the peer, and ends only that connection. */
  session: (ch: Channel) => Promise<void>;
  log: LinkLog;
}

/**
 * A TLS-PSK listener for the link: a primary's (`link serve`) or a
 * receiving secondary's (`link receive`). A failed handshake (no key, a
 * wrong key, another group, not TLS) is logged with its reason; other
 * connections go on.
 */
export class LinkServer {
  readonly #server: tls.Server;
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<Promise<void>>();

  /** Sessions running now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  constructor(o: LinkServerOptions) {
    this.#server = tls.createServer(serverOptions(o.key, (identity) => {
      const ok = o.identityOk(identity);
      if (!ok) o.log({ event: 'refused', why: `PSK identity ${JSON.stringify(identity.slice(0, 64))} is not this group` });
      return ok;
    }), (socket) => {
      const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
      socket.setKeepAlive(true, 10_000);
      socket.setNoDelay(true);
      const ch = new Channel(socket, peer);
      const run = o.session(ch).catch(async (e: unknown) => {
        const closed = isJshipError(e, 'LINK_CLOSED');
        o.log({ event: closed ? 'disconnected' : 'session-failed', peer, ...(isJshipError(e) ? { code: e.code, why: e.message } : { why: (e as Error).message }) });
        if (!closed) await ch.refuse(e);
      }).finally(() => {
        ch.close();
        this.#sessions.delete(run);
      });
      this.#sessions.add(run);
    });
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    this.#server.on('tlsClientError', (e: Error & { code?: string }, s: tls.TLSSocket) => {
      o.log({ event: 'refused', peer: `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`, why: handshakeFailure(e) });
    });
  }

  async listen(host: string, port: number): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const a = this.#server.address() as AddressInfo;
    return formatHostPort({ host: a.address, port: a.port });
  }

  /** Stops listening and ends every connection (the peers resume later from their confirmed positions). */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    for (const s of this.#sockets) s.destroy();
    await Promise.allSettled([...this.#sessions]);
    await closed;
  }
}
