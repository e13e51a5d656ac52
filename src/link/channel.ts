import type { Duplex } from 'node:stream';
import { JshipError, isJshipError } from '../core/errors.js';
import { FrameReader, MessageType, type Frame } from './frame.js';
import type { FrameReads } from './frame-reads.js';
import { message } from './messages.js';

/**
 * One link connection as a sequence of frames: `next()` waits for the next
 * whole frame (or fails when the peer goes quiet past the timeout, closes,
 * or sends something that is not a frame), `send()` writes and waits when
 * the socket's buffer is full. Reading stops while 8 frames wait to be
 * taken or 8 MiB are unparsed. A socket this side dials is read through
 * FrameReads (each frame read into its own memory) instead of 'data'.
 */
export class Channel {
  readonly peer: string;
  readonly #socket: Duplex;
  readonly #reader = new FrameReader();
  readonly #reads: FrameReads | undefined;
  readonly #frames: Frame[] = [];
  #waiter: { resolve: (f: Frame) => void; reject: (e: unknown) => void } | undefined;
  #failure: unknown;
  readonly #ended = new AbortController();

  constructor(socket: Duplex, peer: string, reads?: FrameReads) {
    this.#socket = socket;
    this.peer = peer;
    this.#reads = reads;
    if (reads) {
      // A socket dialed with reads.onread: frames come whole; reading stops while 8 wait to be taken.
      reads.attach({
        frame: (f) => {
          this.#frames.push(f);
          this.#deliver();
          return this.#frames.length < 8;
        },
        fail: (e) => {
          this.#fail(e);
          socket.destroy();
        },
      });
    } else socket.on('data', (c: Buffer) => {
      this.#reader.push(c);
      try {
        for (let f = this.#reader.next(); f; f = this.#reader.next()) this.#frames.push(f);
      } catch (e) {
        this.#fail(e);
        socket.destroy();
        return;
      }
      // Frames carry up to 4 MiB: at most ~8 of them (and 8 MiB unparsed) wait for the reader.
      if (this.#reader.buffered > 8 * 1024 * 1024 || this.#frames.length >= 8) socket.pause();
      this.#deliver();
    });
    socket.on('error', (e) => this.#fail(new JshipError('LINK_CLOSED', `connection with ${peer} failed: ${e.message}`, { hint: 'the transfer resumes from the last confirmed record when the link is back', cause: e })));
    socket.on('close', () => this.#fail(new JshipError('LINK_CLOSED', `${peer} closed the connection`, { hint: 'the transfer resumes from the last confirmed record when the link is back' })));
  }

  /** The connection has failed or closed: whatever waits on the peer can stop waiting. */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Aborts once the connection has failed or closed (`failed`): for waits that end with it. */
  get ended(): AbortSignal {
    return this.#ended.signal;
  }

  #fail(e: unknown): void {
    this.#failure ??= e;
    this.#ended.abort();
    this.#deliver();
  }

  #deliver(): void {
    const w = this.#waiter;
    if (!w) return;
    const f = this.#frames.shift();
    if (f) {
      this.#waiter = undefined;
      if (this.#frames.length < 4) this.#socket.resume();
      w.resolve(f);
    } else if (this.#failure !== undefined) {
      this.#waiter = undefined;
      w.reject(this.#failure);
    }
  }

  /** The next frame; rejects after `timeoutMs` of silence. */
  next(timeoutMs: number): Promise<Frame> {
    if (this.#waiter) throw new Error('Channel.next called twice');
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new JshipError('LINK_CLOSED', `${this.peer} sent nothing for ${Math.round(timeoutMs / 1000)} s`, { hint: 'the peer or the network is stuck; the transfer resumes from the last confirmed record' }));
      }, timeoutMs);
      this.#waiter = {
        resolve: (f) => { clearTimeout(timer); resolve(f); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      this.#deliver();
    });
  }

  /**
   * Sends a frame, or its pieces in order (a header, then a payload never
   * copied to be framed). It returns once the socket takes more, which may
   * be before the pieces are written: a caller that reuses a piece's memory
   * asks for `written` (it returns once the socket has written them all).
   */
  async send(frame: Buffer | readonly Buffer[], opts: { written?: boolean } = {}): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    const pieces = Buffer.isBuffer(frame) ? [frame] : frame;
    let more = true;
    let written: ((e?: Error | null) => void) | undefined;
    const wait = opts.written ? this.#until((done) => { written = done; }) : undefined;
    // Not corked: a TLS socket copies pieces written together (a writev) into one fresh buffer to encrypt them,
    // 4 MiB per TAPE_DATA frame; written one by one, each is encrypted where it lies (the header a record of its own).
    // A socket's writes call back in order: the last one's callback says every piece is written.
    pieces.forEach((piece, i) => { more = i === pieces.length - 1 && written ? this.#socket.write(piece, written) : this.#socket.write(piece); });
    if (wait) return wait;
    if (!more) await this.#until((done) => this.#socket.once('drain', done));
  }

  /** Waits until `register`'s callback is called (an error rejects), or fails when the connection closes first. */
  #until(register: (done: (e?: Error | null) => void) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const gone = (): void => finish(null, true);
      const finish = (e: Error | null | undefined, closed = false): void => {
        if (settled) return;
        settled = true;
        this.#socket.off('close', gone);
        if (!closed && !e) resolve();
        else reject(this.#failure ?? e ?? new JshipError('LINK_CLOSED', `${this.peer} closed the connection`, { hint: 'the transfer resumes from the last confirmed record' }));
      };
      this.#socket.once('close', gone);
      register((e) => finish(e));
    });
  }

  /**
   * A TAPE_DATA payload its reader keeps nothing of any more: a dialed
   * channel reads the next one into its memory (FrameReads). Only a payload
   * `next` gave, given back once.
   */
  giveBack(payload: Buffer): void {
    this.#reads?.giveBack(payload);
  }

  /** Tells the peer why, then closes. */
  async refuse(e: unknown): Promise<void> {
    const body = isJshipError(e) ? { code: e.code, message: e.message, hint: e.hint ?? null } : { code: 'IO', message: (e as Error).message, hint: null };
    await this.send(message(MessageType.Error, body)).catch(() => undefined);
    this.close();
  }

  /** The peer has gone: it closed its side, or the connection failed or was closed here. */
  get gone(): boolean {
    return this.#failure !== undefined || this.#socket.readableEnded || this.#socket.destroyed;
  }

  close(): void {
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}
