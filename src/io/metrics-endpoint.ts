import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenOn } from './sockets.js';

/** What an endpoint serves: the exposition text, rendered at each scrape. */
export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

/** Serves GET /metrics over HTTP on HOST:PORT or a Unix socket (0600). */
export class MetricsEndpoint {
  readonly #server: Server;
  where = '';

  constructor(metrics: MetricsSource) {
    this.#server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('jship serves /metrics only\n');
        return;
      }
      metrics.render().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
      );
    });
  }

  async listen(at: { socket: string } | { host: string; port: number }): Promise<string> {
    await listenOn(this.#server, at);
    const a = this.#server.address();
    this.where = 'socket' in at ? at.socket : `${(a as AddressInfo).address}:${(a as AddressInfo).port}`;
    return this.where;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
