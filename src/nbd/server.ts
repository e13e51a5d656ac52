import { connect, createServer, type Server, type Socket } from 'node:net';
import { promises as fsp } from 'node:fs';
import { JshipError, param } from '../core/errors.js';
import { MAX_SOCKET_PATH, fitsSocketPath, formatHostPort, listenOn } from '../io/sockets.js';
import { Budget } from './budget.js';
import { NbdConnection, type ConnectionStats, type Log, type RequestObserver } from './connection.js';
import type { NbdBackend } from './export.js';

/** Payload and reply bytes all connections together may hold. */
const SERVER_BUDGET = 128 * 1024 * 1024;
const RATE_WINDOW = 10;

export type Listen = { socket: string } | { host: string; port: number };

export interface ServerStats {
  listening: string;
  startedAt: string;
  connections: ConnectionStats[];
  totals: { connections: number; requests: number; bytesRead: number; bytesWritten: number; errors: number };
  /** Over the last (up to) 10 seconds. */
  rates: { requestsPerSecond: number; readBytesPerSecond: number; writeBytesPerSecond: number; seconds: number };
}

interface Sample { at: number; requests: number; bytesRead: number; bytesWritten: number }

/**
 * The NBD server: a listening socket and its connections. Closing stops
 * accepting, lets every connection finish the requests it has read, then
 * flushes the backend.
 */
export class NbdServer {
  readonly #backend: NbdBackend;
  readonly #log: Log;
  readonly #budget = new Budget(SERVER_BUDGET);
  readonly #connections = new Set<NbdConnection>();
  readonly #server: Server;
  readonly #samples: Sample[] = [];
  readonly #gone = { connections: 0, requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  #timer: NodeJS.Timeout | undefined;
  #where = '';
  #startedAt = Date.now();
  #next = 1;
  #observer: RequestObserver | undefined;

  constructor(backend: NbdBackend, log: Log) {
    this.#backend = backend;
    this.#log = log;
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (socket) => this.#accept(socket));
  }

  async listen(where: Listen): Promise<string> {
    if ('socket' in where) {
      if (!fitsSocketPath(where.socket)) {
        throw new JshipError('USAGE', `socket path ${where.socket} is longer than the ${MAX_SOCKET_PATH} bytes a Unix socket path may have`, {
          hint: `give a shorter ${param('socket')} PATH`,
        });
      }
      await removeStaleSocket(where.socket);
    }
    await listenOn(this.#server, where).catch((e: NodeJS.ErrnoException) => {
      if (e instanceof JshipError) throw e;
      throw new JshipError('IO', `cannot listen on ${'socket' in where ? where.socket : `${where.host}:${where.port}`}: ${e.message}`, {
        hint: e.code === 'EADDRINUSE' ? 'another server listens there: stop it or pick another address' : 'check the address and permissions',
        cause: e,
      });
    });
    if ('socket' in where) {
      this.#where = where.socket;
    } else {
      const a = this.#server.address();
      this.#where = formatHostPort(typeof a === 'object' && a ? { host: a.address, port: a.port } : where);
    }
    this.#startedAt = Date.now();
    this.#timer = setInterval(() => this.#sample(), 1000);
    this.#timer.unref();
    this.#sample();
    return this.#where;
  }

  get address(): string {
    return this.#where;
  }

  /** Observes every request of the connections accepted from now on (metrics). */
  observe(fn: RequestObserver): void {
    this.#observer = fn;
  }

  stats(): ServerStats {
    const conns = [...this.#connections].map((c) => ({ ...c.stats, requests: { ...c.stats.requests } }));
    const now = this.#totals();
    const first = this.#samples[0] ?? { at: Date.now(), ...now };
    const seconds = Math.max((Date.now() - first.at) / 1000, 0.001);
    return {
      listening: this.#where,
      startedAt: new Date(this.#startedAt).toISOString(),
      connections: conns,
      totals: { connections: this.#gone.connections + conns.length, ...now, errors: this.#gone.errors + conns.reduce((n, c) => n + c.errors, 0) },
      rates: {
        requestsPerSecond: (now.requests - first.requests) / seconds,
        readBytesPerSecond: (now.bytesRead - first.bytesRead) / seconds,
        writeBytesPerSecond: (now.bytesWritten - first.bytesWritten) / seconds,
        seconds,
      },
    };
  }

  /** Ends every connection at once (a stop that ran out of time): replies not yet sent are lost to their clients. */
  abort(): number {
    const n = this.#connections.size;
    for (const c of this.#connections) c.abort();
    return n;
  }

  /** Stops accepting, finishes what every connection has read, flushes. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    const closing = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await Promise.all([...this.#connections].map((c) => c.shutdown()));
    await closing;
    await this.#backend.flush();
  }

  #accept(socket: Socket): void {
    const id = `client ${this.#next++} (${socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix socket'})`;
    const conn = new NbdConnection(socket, this.#backend, this.#budget, this.#log, id, this.#observer);
    this.#connections.add(conn);
    this.#log({ event: 'client-connected', client: id });
    void conn.closed.then(() => {
      this.#connections.delete(conn);
      const s = conn.stats;
      this.#gone.connections++;
      this.#gone.requests += count(s);
      this.#gone.bytesRead += s.bytesRead;
      this.#gone.bytesWritten += s.bytesWritten;
      this.#gone.errors += s.errors;
      this.#log({ event: 'client-disconnected', client: id, export: s.export, requests: count(s), bytesWritten: s.bytesWritten, bytesRead: s.bytesRead, errors: s.errors });
    });
  }

  #totals(): { requests: number; bytesRead: number; bytesWritten: number } {
    let requests = this.#gone.requests;
    let bytesRead = this.#gone.bytesRead;
    let bytesWritten = this.#gone.bytesWritten;
    for (const c of this.#connections) {
      requests += count(c.stats);
      bytesRead += c.stats.bytesRead;
      bytesWritten += c.stats.bytesWritten;
    }
    return { requests, bytesRead, bytesWritten };
  }

  #sample(): void {
    this.#samples.push({ at: Date.now(), ...this.#totals() });
    if (this.#samples.length > RATE_WINDOW + 1) this.#samples.shift();
  }
}

function count(s: ConnectionStats): number {
  return Object.values(s.requests).reduce((n, k) => n + k, 0);
}

/** A socket file left by a server that died is removed; one a live server answers on is not. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await fsp.lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) {
    throw new JshipError('USAGE', `${path} exists and is not a socket`, { hint: `give ${param('socket')} a path that is free` });
  }
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new JshipError('GROUP_LOCKED', `a server already listens on ${path}`, { hint: 'stop it first, or give another --socket' });
  await fsp.unlink(path);
}
