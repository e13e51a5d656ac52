import { crc32 } from '../core/crc32.js';
import { ByteQueue } from '../core/byte-queue.js';
import { JshipError } from '../core/errors.js';

/**
 * Frames of the direct link (docs/FORMAT.md "Direct link"): a 16-byte
 * header, little-endian, then the payload.
 *
 *   0  4  magic "JSLK"
 *   4  1  protocol version (1)
 *   5  1  message type
 *   6  2  reserved, zero
 *   8  4  payload length
 *  12  4  CRC-32 of bytes 0..11 and then the payload
 *
 * The CRC guards every frame end to end (TLS guards the wire; the CRC
 * catches a bug or a broken buffer on either host).
 */
export const FRAME_MAGIC = Buffer.from('JSLK', 'latin1');
export const LINK_VERSION = 1;
export const FRAME_HEADER = 16;
/** No frame is larger: tape bytes travel in chunks of DATA_CHUNK. */
export const MAX_PAYLOAD = 4 * 1024 * 1024;
export const DATA_CHUNK = MAX_PAYLOAD;

export enum MessageType {
  Hello = 1,
  Error = 2,
  Read = 3,
  Idle = 4,
  TapeBegin = 5,
  TapeData = 6,
  TapeEnd = 7,
  Confirm = 8,
  StatusRequest = 9,
  Status = 10,
}

const TYPES = new Set<number>(Object.values(MessageType).filter((v): v is number => typeof v === 'number'));

export interface Frame {
  type: MessageType;
  payload: Buffer;
}

function bad(message: string): never {
  throw new JshipError('LINK_PROTOCOL', message, { hint: 'the peer does not speak this jship link protocol (or the stream is damaged); the connection was closed' });
}

export function encodeFrame(type: MessageType, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = encodeFrameHeader(type, payload);
  return payload.length === 0 ? h : Buffer.concat([h, payload]);
}

/** The 16-byte header of a frame of `payload` (sent before it, so that a large payload is never copied to be framed). */
export function encodeFrameHeader(type: MessageType, payload: Buffer): Buffer {
  if (payload.length > MAX_PAYLOAD) throw new JshipError('LINK_PROTOCOL', `a ${MessageType[type]} frame of ${payload.length} bytes is larger than ${MAX_PAYLOAD}`, { hint: 'this is a bug in jship' });
  const h = Buffer.alloc(FRAME_HEADER);
  FRAME_MAGIC.copy(h, 0);
  h.writeUInt8(LINK_VERSION, 4);
  h.writeUInt8(type, 5);
  h.writeUInt16LE(0, 6);
  h.writeUInt32LE(payload.length, 8);
  h.writeUInt32LE(crc32(payload, crc32(h.subarray(0, 12))), 12);
  return h;
}

export interface FrameHeader {
  type: MessageType;
  length: number;
  crc: number;
}

/** Checks a frame header; refuses a wrong magic, another version, an unknown type or an oversized payload. */
export function decodeFrameHeader(h: Buffer): FrameHeader {
  if (h.length < FRAME_HEADER) bad(`frame header of ${h.length} bytes`);
  if (!h.subarray(0, 4).equals(FRAME_MAGIC)) bad(`bad frame magic ${h.subarray(0, 4).toString('hex')}`);
  const version = h.readUInt8(4);
  if (version !== LINK_VERSION) {
    throw new JshipError('LINK_VERSION', `the peer speaks link protocol version ${version}; this jship speaks ${LINK_VERSION}`, { hint: 'run the same jship release on both sites' });
  }
  const type = h.readUInt8(5);
  if (!TYPES.has(type)) bad(`unknown message type ${type}`);
  if (h.readUInt16LE(6) !== 0) bad('reserved header bytes are not zero');
  const length = h.readUInt32LE(8);
  if (length > MAX_PAYLOAD) bad(`frame payload of ${length} bytes is larger than the limit ${MAX_PAYLOAD}`);
  return { type, length, crc: h.readUInt32LE(12) };
}

/**
 * Cuts frames out of a byte stream. `push` chunks as they arrive; `next`
 * returns whole, checked frames, or undefined until one is complete.
 */
export class FrameReader {
  readonly #q = new ByteQueue();
  #header: FrameHeader | undefined;
  #headerBytes: Buffer | undefined;

  push(chunk: Buffer): void {
    this.#q.push(chunk);
  }

  get buffered(): number {
    return this.#q.length;
  }

  next(): Frame | undefined {
    if (!this.#header) {
      const h = this.#q.take(FRAME_HEADER);
      if (!h) return undefined;
      this.#header = decodeFrameHeader(h);
      this.#headerBytes = Buffer.from(h.subarray(0, 12));
    }
    const payload = this.#q.take(this.#header.length);
    if (!payload) return undefined;
    const frame = checkedFrame(this.#headerBytes as Buffer, this.#header, payload);
    this.#header = undefined;
    return frame;
  }
}

/** The frame, once its CRC (over header bytes 0..11, then the payload) is the header's; refuses it otherwise. */
export function checkedFrame(headerBytes: Buffer, h: FrameHeader, payload: Buffer): Frame {
  if (crc32(payload, crc32(headerBytes.subarray(0, 12))) !== h.crc) bad(`CRC mismatch in a ${MessageType[h.type]} frame`);
  return { type: h.type, payload };
}
