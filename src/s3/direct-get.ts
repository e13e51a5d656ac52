import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Readable } from 'node:stream';
import { buildQueryString, HttpResponse, type HttpHandler, type HttpRequest } from '@smithy/core/protocols';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { HttpHandlerOptions, NodeHttpHandlerOptions } from '@smithy/types';

/** Bytes of a response's status line and headers at most (S3's are under 2 KiB). */
const HEAD_MAX = 64 * 1024;

/**
 * The SDK's request handler, with ranged GETs read straight into the
 * caller's buffer. Through node's HTTP client each 64 KiB socket read is a
 * fresh buffer, parsed, wrapped and copied once more; V8 counts each
 * towards its next collection, and a 1.1 GiB download cost 1.6–1.8
 * user-seconds, 0.7 of them collecting. Read here, the socket (plain or
 * TLS) writes the body into the range's own buffer (node's `onread`), and
 * the same download costs 1.0–1.1 (docs/BENCHMARKS.md, session 17).
 *
 * Only what S3 answers a ranged GET with is taken this way: a response
 * framed by Content-Length. Anything else — a request without a Range, a
 * body without a length — goes to `inner`, node's HTTP client, as before.
 * The connection carries one request (`connection: close`): no idle socket
 * to find dead on reuse.
 */
export class DirectGetHandler implements HttpHandler<NodeHttpHandlerOptions> {
  readonly metadata = { handlerProtocol: 'http/1.1' };

  constructor(private readonly inner: NodeHttpHandler, private readonly timeouts: { connect: number; idle: number }) {}

  async handle(request: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    if ((request.protocol !== 'http:' && request.protocol !== 'https:') || request.method !== 'GET' || !('range' in request.headers)) return this.inner.handle(request, options);
    const body = await DirectBody.get(request, this.timeouts, options.abortSignal);
    if (body === undefined) return this.inner.handle(request, options);
    return { response: new HttpResponse({ statusCode: body.status, reason: body.reason, headers: body.headers, body }) };
  }

  updateHttpClientConfig(key: keyof NodeHttpHandlerOptions, value: NodeHttpHandlerOptions[typeof key]): void {
    this.inner.updateHttpClientConfig(key, value);
  }

  httpHandlerConfigs(): NodeHttpHandlerOptions {
    return this.inner.httpHandlerConfigs();
  }

  destroy(): void {
    this.inner.destroy();
  }
}

/** The status line and headers of a response, as received. */
export interface ResponseHead {
  status: number;
  reason: string;
  headers: Record<string, string>;
  /** Content-Length; undefined when the body is framed otherwise (chunked, or until close). */
  length: number | undefined;
  /** Bytes of the status line and headers, with the blank line. */
  size: number;
}

/**
 * Parses a response head from `buf` (HTTP/1.x). Undefined while the blank
 * line that ends it has not arrived; throws on anything that is not one.
 */
export function parseResponseHead(buf: Buffer): ResponseHead | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length >= HEAD_MAX) throw new Error(`response head longer than ${HEAD_MAX} bytes`);
    return undefined;
  }
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`not an HTTP header: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let length: number | undefined;
  const cl = headers['content-length'];
  if (cl !== undefined && headers['transfer-encoding'] === undefined) {
    if (!/^\d{1,15}$/.test(cl)) throw new Error(`Content-Length ${JSON.stringify(cl)} is not one length`);
    length = Number(cl);
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers, length, size: end + 4 };
}

/**
 * One response's body on its own connection. `readInto` has the socket
 * write the body straight into a buffer; read as a stream (the SDK reads
 * an error's body so), it yields copies.
 */
export class DirectBody extends Readable {
  readonly status: number;
  readonly reason: string;
  readonly headers: Record<string, string>;
  /** Body bytes (Content-Length). */
  readonly length: number;
  #socket: Socket;
  #received = 0;
  /** Bytes received while no reader waited (with the head, or on a read begun before a reader came), not yet handed on. */
  #early: Buffer;
  #into: { buf: Buffer; at: number; done: (n: number) => void; fail: (e: Error) => void } | undefined;
  /** Where the socket was told to read next (node asks for it right after each read). */
  #next: Buffer | undefined;
  /** Where a read lands when no reader waits: the head's buffer, free once the head is parsed (what followed it copied out). */
  readonly #spill: Buffer;
  #ended = false;
  #error: Error | undefined;

  private constructor(socket: Socket, head: ResponseHead, early: Buffer, spill: Buffer, setDest: (d: () => Buffer, got: (n: number) => boolean) => void) {
    super();
    this.#socket = socket;
    this.#spill = spill;
    this.status = head.status;
    this.reason = head.reason;
    this.headers = head.headers;
    this.length = head.length ?? 0;
    this.#early = early;
    this.#received = early.length;
    setDest(() => this.#dest(), (n) => this.#got(n));
    socket.pause();
    socket.on('error', (e) => this.#fail(e));
    socket.on('close', () => {
      if (this.#received < this.length) this.#fail(Object.assign(new Error(`connection closed after ${this.#received} of ${this.length} body bytes`), { code: 'ECONNRESET' }));
    });
    if (this.#received > this.length) this.#fail(new Error(`the response held more than its Content-Length of ${this.length} bytes`));
    else if (this.#received === this.length) this.#finish();
  }

  /**
   * Where the socket's next read lands: the waiting reader's buffer, never
   * more than the body's rest; with no reader, a small spill buffer (node
   * fixes the next read's buffer right after each read, before a reader
   * may come).
   */
  #dest(): Buffer {
    const r = this.#into;
    const rest = Math.max(1, this.length - this.#received);
    this.#next = r && r.at < r.buf.length ? r.buf.subarray(r.at, r.at + Math.min(r.buf.length - r.at, rest)) : this.#spill.subarray(0, Math.min(this.#spill.length, rest));
    return this.#next;
  }

  /** The socket wrote `n` bytes where #dest pointed. Returns whether to read on. */
  #got(n: number): boolean {
    this.#received += n;
    if (this.#received > this.length) {
      this.#fail(new Error(`the response held more than its Content-Length of ${this.length} bytes`));
      return false;
    }
    const r = this.#into;
    if (this.#next?.buffer === this.#spill.buffer) {
      let landed = this.#spill.subarray(0, n);
      if (r) {
        const k = landed.copy(r.buf, r.at);
        r.at += k;
        landed = landed.subarray(k);
      }
      if (landed.length > 0) this.#early = Buffer.concat([this.#early, landed]);
    } else if (r) {
      r.at += n;
    }
    if (this.#received === this.length) this.#finish();
    if (!r) return false; // no reader: wait for one
    if (r.at === r.buf.length || (this.#received === this.length && this.#early.length === 0)) {
      this.#into = undefined;
      r.done(r.at);
      return false;
    }
    return true;
  }

  /** Body bytes written into readers' buffers so far (those of a read that broke too). */
  get delivered(): number {
    return this.#received - this.#early.length;
  }

  /**
   * Fills `buf` with the body's next bytes: as many as fit, or as remain.
   * Resolves with their count (0 at the end); rejects when the connection
   * breaks first, with the bytes it did write in `buf` left there.
   */
  readInto(buf: Buffer): Promise<number> {
    if (this.#into) return Promise.reject(new Error('one readInto at a time'));
    let at = 0;
    if (this.#early.length > 0) {
      at = this.#early.copy(buf);
      this.#early = this.#early.subarray(at);
    }
    if (at === buf.length || (this.#received === this.length && this.#early.length === 0)) return Promise.resolve(at);
    if (this.#error) return Promise.reject(this.#error);
    return new Promise<number>((done, fail) => {
      this.#into = { buf, at, done, fail };
      this.#socket.resume();
    });
  }

  #finish(): void {
    this.#ended = true;
    this.#socket.destroy();
  }

  #fail(e: Error): void {
    if (this.#ended || this.#error) return;
    this.#error = e;
    this.#socket.destroy();
    const r = this.#into;
    this.#into = undefined;
    // Not destroy(e): a body nobody reads yet would throw it as an unhandled 'error'; the next read rejects with it.
    r?.fail(e);
  }

  override _read(size: number): void {
    const buf = Buffer.allocUnsafe(Math.max(1, Math.min(size, 64 * 1024, this.length)));
    this.readInto(buf).then(
      (n) => this.push(n === 0 ? null : buf.subarray(0, n)),
      (e: Error) => this.destroy(e),
    );
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    if (!this.#ended) {
      this.#ended = true;
      this.#socket.destroy();
      const r = this.#into;
      this.#into = undefined;
      r?.fail(err ?? new Error('body destroyed'));
    }
    cb(err);
  }

  /**
   * Sends the request on a new connection and waits for the response's head.
   * Undefined when the body is not framed by a length (the caller sends the request another way).
   */
  static get(request: HttpRequest, timeouts: { connect: number; idle: number }, signal?: HttpHandlerOptions['abortSignal']): Promise<DirectBody | undefined> {
    const query = request.query ? buildQueryString(request.query) : '';
    const target = `${request.path}${query ? `?${query}` : ''}`;
    const lines = [`GET ${target} HTTP/1.1`];
    for (const [k, v] of Object.entries(request.headers)) {
      if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) throw new Error(`header ${k} holds a line break`);
      if (k.toLowerCase() !== 'connection') lines.push(`${k}: ${v}`);
    }
    if (!Object.keys(request.headers).some((k) => k.toLowerCase() === 'host')) lines.push(`host: ${request.hostname}${request.port ? `:${request.port}` : ''}`);
    lines.push('connection: close', '', '');
    const head = Buffer.allocUnsafeSlow(HEAD_MAX);
    let headLen = 0;
    let dest = (): Buffer => head.subarray(headLen);
    let got = (n: number): boolean => {
      headLen += n;
      return true;
    };
    return new Promise<DirectBody | undefined>((resolve, reject) => {
      let settled = false;
      const fail = (e: Error): void => {
        socket.destroy();
        if (!settled) {
          settled = true;
          reject(e);
        }
      };
      const host = request.hostname.replace(/^\[(.*)\]$/, '$1');
      const onread = {
        buffer: () => dest(),
        callback: (n: number) => {
          if (settled) return got(n);
          got(n);
          let parsed: ResponseHead | undefined;
          try {
            parsed = parseResponseHead(head.subarray(0, headLen));
          } catch (e) {
            fail(e as Error);
            return false;
          }
          if (!parsed) return true;
          settled = true;
          if (parsed.length === undefined) {
            socket.destroy();
            resolve(undefined);
            return false;
          }
          const early = Buffer.from(head.subarray(parsed.size, headLen));
          resolve(new DirectBody(socket, parsed, early, head, (d, g) => {
            dest = d;
            got = g;
          }));
          return false;
        },
      };
      // https as node's https agent does it: the system's and NODE_EXTRA_CA_CERTS' authorities, the name checked.
      const tls = request.protocol === 'https:';
      const socket = tls
        ? // node passes onread on to the TLS socket (its types do not list it); the test over https proves it is used.
          tlsConnect({ host, port: request.port ?? 443, ...(isIP(host) ? {} : { servername: host }), onread } as ConnectionOptions)
        : connect({ host, port: request.port ?? 80, onread });
      const abort = (): void => fail(Object.assign(new Error('Request aborted'), { name: 'AbortError' }));
      if (signal?.aborted) abort();
      // The SDK passes a DOM AbortSignal (or its own, with onabort only).
      if (signal && 'addEventListener' in signal) (signal as globalThis.AbortSignal).addEventListener('abort', abort, { once: true });
      else if (signal) signal.onabort = abort;
      socket.setTimeout(timeouts.connect);
      socket.on('timeout', () => socket.destroy(Object.assign(new Error(`no answer from ${request.hostname} in ${settled ? timeouts.idle : timeouts.connect} ms`), { code: 'ETIMEDOUT' })));
      socket.on('error', fail);
      socket.on('close', () => fail(Object.assign(new Error('connection closed before the response head'), { code: 'ECONNRESET' })));
      // Written now, sent once connected (and, for https, once the handshake is done).
      socket.write(lines.join('\r\n'));
      socket.once(tls ? 'secureConnect' : 'connect', () => socket.setTimeout(timeouts.idle));
    });
  }
}
