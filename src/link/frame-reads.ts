import { BufferLender } from '../core/buffer-lender.js';
import { FRAME_HEADER, MAX_PAYLOAD, MessageType, checkedFrame, decodeFrameHeader, type Frame, type FrameHeader } from './frame.js';

/**
 * TAPE_DATA payloads this long or longer are read into a buffer of the next
 * power of two (at most MAX_PAYLOAD, 4 MiB) that is given back and read into
 * again: at most twice a payload's own memory.
 */
const LEND_FROM = 64 * 1024;
/** Given-back buffers kept, in bytes (32 MiB: eight of the largest). */
const SPARE_BYTES = 32 * 1024 * 1024;

/** The size of the buffer a payload of `length` bytes is read into: the next power of two. */
const sizeFor = (length: number): number => 2 ** Math.ceil(Math.log2(length));

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
 * TAPE_DATA payload's buffer is read into again once its reader gives it
 * back (`giveBack`). Each read asks for no more than the frame still lacks,
 * so a read never spans two frames. Every frame is checked as FrameReader
 * checks it (header, CRC).
 */
export class FrameReads {
  readonly #header = Buffer.alloc(FRAME_HEADER);
  #head: FrameHeader | undefined;
  #payload: Buffer = Buffer.alloc(0);
  #filled = 0;
  readonly #buffers = new BufferLender(SPARE_BYTES);
  #sink: FrameSink | undefined;
  /** Frames (and a failure) that came before the sink was attached. */
  readonly #early: Frame[] = [];
  #failure: unknown;

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
    this.#buffers.giveBack(payload);
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
    if (type !== MessageType.TapeData || length < LEND_FROM) return Buffer.allocUnsafe(length);
    return this.#buffers.lend(Math.min(sizeFor(length), MAX_PAYLOAD)).subarray(0, length);
  }

  #fail(e: unknown): false {
    this.#failure = e;
    this.#head = undefined;
    this.#filled = 0;
    this.#sink?.fail(e);
    return false;
  }
}
