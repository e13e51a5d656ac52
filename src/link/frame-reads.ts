import { FRAME_HEADER, MAX_PAYLOAD, MessageType, checkedFrame, decodeFrameHeader, type Frame, type FrameHeader } from './frame.js';

/**
 * TAPE_DATA payloads this long or longer (up to MAX_PAYLOAD, 4 MiB) are read
 * into a MAX_PAYLOAD buffer that is given back and read into again: at
 * most twice the memory of a fresh one, for the waiting frames and those
 * an import holds.
 */
const LEND_FROM = MAX_PAYLOAD / 2;
/** Given-back payload buffers kept (MAX_PAYLOAD each). */
const SPARES = 8;

/** Where the frames go: `frame` returns false to stop reading until the socket is resumed. */
export interface FrameSink {
  frame(f: Frame): boolean;
  fail(e: unknown): void;
}

/**
 * Frames read straight into the memory they are handed on in: the `onread`
 * of a socket this side dials (net and tls take it for connecting sockets
 * only). Without it Node.js reads each TLS record (16 KiB) into fresh memory
 * and FrameReader copies those into each frame; here a header is read into
 * its 16 bytes and a payload into its own buffer, nothing copied, and a long
 * TAPE_DATA payload's buffer (4 MiB) is read into again once its reader
 * gives it back (`giveBack`). Each read asks for no more than the frame still lacks, so a
 * read never spans two frames. Every frame is checked as FrameReader checks
 * it (header, CRC).
 */
export class FrameReads {
  readonly #lendFrom: number;
  readonly #header = Buffer.alloc(FRAME_HEADER);
  #head: FrameHeader | undefined;
  #payload: Buffer = Buffer.alloc(0);
  #filled = 0;
  readonly #spare: Buffer[] = [];
  /** The payload buffers handed on and not given back yet. */
  readonly #lent = new WeakSet<ArrayBufferLike>();
  #sink: FrameSink | undefined;
  /** Frames (and a failure) that came before the sink was attached. */
  readonly #early: Frame[] = [];
  #failure: unknown;

  /** `lendFrom`: LEND_FROM unless a test asks for less. */
  constructor(opts: { lendFrom?: number } = {}) {
    this.#lendFrom = opts.lendFrom ?? LEND_FROM;
  }

  /** The socket's `onread` option. */
  readonly onread = {
    buffer: (): Buffer => (this.#head ? this.#payload : this.#header).subarray(this.#filled),
    callback: (n: number): boolean => this.#read(n),
  };

  /** Sends every frame to `sink` from now on (those that came before first). */
  attach(sink: FrameSink): void {
    this.#sink = sink;
    for (const f of this.#early.splice(0)) sink.frame(f);
    if (this.#failure !== undefined) sink.fail(this.#failure);
  }

  /** A payload its reader keeps nothing of any more: its memory is read into again. Anything else is ignored. */
  giveBack(payload: Buffer): void {
    if (payload.byteOffset !== 0 || !this.#lent.delete(payload.buffer)) return;
    if (this.#spare.length < SPARES) this.#spare.push(Buffer.from(payload.buffer, 0, MAX_PAYLOAD));
  }

  #read(n: number): boolean {
    if (this.#failure !== undefined) return false;
    this.#filled += n;
    if (!this.#head) {
      if (this.#filled < FRAME_HEADER) return true;
      try {
        this.#head = decodeFrameHeader(this.#header);
      } catch (e) {
        return this.#fail(e);
      }
      this.#filled = 0;
      this.#payload = this.#take(this.#head);
      if (this.#head.length > 0) return true;
    } else if (this.#filled < this.#head.length) {
      return true;
    }
    const head = this.#head;
    this.#head = undefined;
    this.#filled = 0;
    let frame: Frame;
    try {
      frame = checkedFrame(this.#header, head, this.#payload);
    } catch (e) {
      return this.#fail(e);
    }
    if (!this.#sink) {
      this.#early.push(frame);
      return true;
    }
    return this.#sink.frame(frame);
  }

  #take({ type, length }: FrameHeader): Buffer {
    if (type !== MessageType.TapeData || length < this.#lendFrom) return Buffer.allocUnsafe(length);
    const b = this.#spare.pop() ?? Buffer.allocUnsafeSlow(MAX_PAYLOAD);
    this.#lent.add(b.buffer);
    return b.subarray(0, length);
  }

  #fail(e: unknown): false {
    this.#failure = e;
    this.#head = undefined;
    this.#filled = 0;
    this.#sink?.fail(e);
    return false;
  }
}
