import type { Duplex } from 'node:stream';
import { JshipError, isJshipError } from '../core/errors.js';
import { FrameReader, MessageType, type Frame } from './frame.js';
import { message } from './messages.js';

/**
 * One link connection as a sequence of frames: `next()` waits for the next
 * whole frame (or fails when the peer goes quiet past the timeout, closes,
 * or sends something that is not a frame), `send()` writes and waits when
 * the socket's buffer is full. Reading stops while 8 frames wait to be
 * taken or 8 MiB are unparsed.
 */
export class Channel {
  readonly peer: string;
  readonly #socket: Duplex;
  readonly #reader = new FrameReader();
  readonly #frames: Frame[] = [];
  #waiter: { resolve: (f: Frame) => void; reject: (e: unknown) => void } | undefined;
  #failure: unknown;

  constructor(socket: Duplex, peer: string) {
    this.#socket = socket;
    this.peer = peer;
    socket.on('data', (c: Buffer) => {
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

  #fail(e: unknown): void {
    this.#failure ??= e;
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

  /** Sends a frame, or its pieces in order (a header, then a payload never copied to be framed). */
  async send(frame: Buffer | readonly Buffer[]): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure;
    let more: boolean;
    if (Buffer.isBuffer(frame)) {
      more = this.#socket.write(frame);
    } else {
      this.#socket.cork();
      more = true;
      for (const piece of frame) more = this.#socket.write(piece);
      this.#socket.uncork();
    }
    if (more) return;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => { this.#socket.off('drain', done); this.#socket.off('close', gone); resolve(); };
      const gone = (): void => { this.#socket.off('drain', done); reject(this.#failure ?? new JshipError('LINK_CLOSED', `${this.peer} closed the connection`, { hint: 'the transfer resumes from the last confirmed record' })); };
      this.#socket.on('drain', done);
      this.#socket.once('close', gone);
    });
  }

  /** Tells the peer why, then closes. */
  async refuse(e: unknown): Promise<void> {
    const body = isJshipError(e) ? { code: e.code, message: e.message, hint: e.hint ?? null } : { code: 'IO', message: (e as Error).message, hint: null };
    await this.send(message(MessageType.Error, body)).catch(() => undefined);
    this.close();
  }

  close(): void {
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.#socket.destroy();
  }
}
