import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { JshipError, param } from '../core/errors.js';
import { decodeMarker } from '../core/marker.js';
import { RECORD_SIZE, RecordType, type RecordHeader } from '../core/record.js';
import { formatSize } from '../core/sizes.js';
import { generationOf, type Lineage } from '../core/epoch.js';
import { ENCRYPTION_OVERHEAD, encryptPayload, type TapeKey } from './crypto.js';
import type { TapeDestination, TapeOutput } from './destination.js';
import {
  LABEL_NAME, TAPE_VERSION, TRAILER_NAME, encodeJson, encodeTrailer,
  type MarkerInfo, type SegmentInfo, type TapeLabel, type TapeTrailer,
} from './label.js';
import { tapeName } from './tape-name.js';
import { SEGMENT_HEADER_SIZE, SegmentKind, encodeSegmentHeader, segmentAad, segmentName } from './segment.js';
import type { FrameContent, FramePool } from './frame-pool.js';
import { newHasher, tapeHashOf, type Hasher } from './tape-hash.js';
import type { PointDigest } from '../core/volume-digest.js';
import { encodeParity } from '../core/reed-solomon.js';
import { groupFits, parityFrame, parityJsonName, parityShards, type GroupFrame, type ParityFrameRef } from './parity.js';

export const DEFAULT_SEGMENT_BYTES = 2 * 1024 * 1024;
/** Segments are cut at most this large (a single larger record still makes one segment). */
const MAX_SEGMENT_BYTES = 16 * 1024 * 1024;
/** Well below the format's frame limit (MAX_FRAME_CONTENT), so that a reader takes every trailer written. */
const MAX_TRAILER_BYTES = 48 * 1024 * 1024;
/** Segments sealing or sealed and not yet queued for writing: two jobs for each of two frame workers (WORKER_DEPTH), and two waiting for the writer. */
const MAX_SEALS_IN_FLIGHT = 6;
/**
 * Frame writes queued on a tape's output, the one being written included:
 * the writer hashes and queues the next frame while the output writes this one.
 */
const MAX_WRITES_QUEUED = 2;

/** A tape that was written and committed. */
export interface WrittenTape {
  serial: number;
  name: string;
  /** Where it is (a file path, or the stream's description). */
  location: string;
  sha256: string;
  bytes: number;
  label: TapeLabel;
  trailer: TapeTrailer;
}

export interface MediaSetOptions {
  groupId: string;
  volumes: Array<{ name: string; size: number }>;
  /** Serial of the first tape; the next ones follow. */
  firstSerial: number;
  /** The hash of the chain's previous tape (tape/tape-hash.ts), or null for the first tape of a chain. */
  prevSha256: string | null;
  destination: TapeDestination;
  pool: FramePool;
  key?: TapeKey;
  /** Split into tapes of at most this many bytes. */
  mediaSize?: number;
  segmentBytes?: number;
  /** Tapes of a link secondary's chain (their own serials), not of the tape chain. */
  link?: { secondary: string };
  /** The group's volumes were created zero-filled then (group.json `zeroedTs`): said in every label. */
  zeroedTs?: string;
  /** The promotions the group's records descend from (group.json `epochs`): said in every label when there are any. */
  epochs?: Lineage;
  /** The digests of the points whose markers lie in [first, last] (a tape's updates): listed in its trailer. */
  digests?: (first: bigint, last: bigint) => Promise<PointDigest[]>;
  /** Parity frames at this share of each group of frames (export --parity PERCENT, 1..100). */
  parity?: number;
  /** For the trailer of tapes with base records. */
  base?: { baseId: bigint; scope: string };
  /** Called with each tape's intended final path, after it is durable and before it is renamed into place. */
  beforeCommit?: (t: { serial: number; finalPath: string; sha256: string; trailer: TapeTrailer }) => Promise<void>;
  /** Called when a tape is in place. */
  onTape?: (t: WrittenTape) => Promise<void>;
  /**
   * Asked before each segment with the record bytes the open tape holds: true
   * ends the tape there and the media set goes on on a further tape, so that
   * what it holds can be committed (and purged) now. Splittable destinations only.
   */
  cutWhen?: (tapeRecordBytes: number) => boolean;
  /** Bytes of records taken in so far. */
  onProgress?: (rawBytes: number) => void;
  /** The clock, host name and ids the labels and frames carry (default the system's): a test writes a tape byte for byte the same. */
  env?: TapeWriterEnv;
}

/** What a tape says of where and when it was written. */
export interface TapeWriterEnv {
  now: () => Date;
  host: string;
  newId: () => string;
  /** Golden test tapes only: the segments' AES-GCM nonces (12 bytes, never repeated under one key). Default random. */
  nonce?: () => Buffer;
}

type SegmentWritten = Omit<Sealed, 'frame' | 'release'>;

const SYSTEM_ENV: TapeWriterEnv = { now: () => new Date(), host: hostname(), newId: () => randomUUID() };

interface Sealed {
  info: SegmentInfo;
  frame: Buffer;
  /** Hands the frame's memory back to the pool once it is written (FramePool.frame). */
  release: () => void;
  kind: SegmentKind;
  markers: MarkerInfo[];
  records: number;
  dataBytes: number;
  first: { seq: bigint; ts: bigint };
  last: { seq: bigint; ts: bigint };
}

interface OpenTape {
  serial: number;
  index: number;
  label: TapeLabel;
  out: TapeOutput;
  /** Its hash (BLAKE3, format 5), taken as its bytes are queued for writing. */
  hash: Hasher;
  bytes: number;
  /** Data bytes of the records in its segments. */
  recordBytes: number;
  /** What the trailer needs of each segment written (not the frames: they are gone to the output). */
  segments: SegmentWritten[];
  /** With parity: the frames since the last parity frame (held until their parity is written, then released). */
  group: { frames: Array<GroupFrame & { buf: Buffer; release: () => void }>; bytes: number; longest: number };
  parityRefs: ParityFrameRef[];
  /** Writes queued on `out`, oldest first; each starts when the one before it has ended (`last`). */
  writes: Array<Promise<void>>;
  last: Promise<void>;
}

/**
 * Writes records into one tape, or a media set of tapes no larger than
 * `mediaSize`: a label frame, one zstd frame per segment (compressed on the
 * worker pool, written in order), a trailer frame and the tar end-of-archive
 * frame. Each tape is complete and verifiable on its own.
 */
export class MediaSetWriter {
  readonly #o: MediaSetOptions;
  readonly #segmentBytes: number;
  readonly #env: TapeWriterEnv;
  readonly #mediaSetId: string;
  #serial: number;
  #prevSha: string | null;
  #index = 0;
  #segNo = 0;
  #kind: SegmentKind | undefined;
  /** The open segment's bytes: its header's room, then the records, copied in as they are added. */
  #content: FrameContent | undefined;
  #partBytes = 0;
  #headers: RecordHeader[] = [];
  #markers: MarkerInfo[] = [];
  #dataBytes = 0;
  #raw = 0;
  readonly #sealing: Array<Promise<Sealed>> = [];
  /** The writer loop: writes sealed segments in order while the caller goes on reading and sealing. */
  #writerActive = false;
  #writerDone: Promise<void> = Promise.resolve();
  #waiter: (() => void) | undefined;
  #tape: OpenTape | undefined;
  readonly #written: WrittenTape[] = [];
  #failed: unknown;

  constructor(o: MediaSetOptions) {
    this.#o = o;
    this.#env = o.env ?? SYSTEM_ENV;
    this.#mediaSetId = this.#env.newId();
    this.#serial = o.firstSerial;
    this.#prevSha = o.prevSha256;
    const limit = o.mediaSize ? Math.max(4096, Math.floor(o.mediaSize / 4)) : DEFAULT_SEGMENT_BYTES;
    this.#segmentBytes = Math.min(o.segmentBytes ?? DEFAULT_SEGMENT_BYTES, limit, MAX_SEGMENT_BYTES);
    if (o.mediaSize !== undefined && !o.destination.splittable) {
      throw new JshipError('USAGE', `${param('mediaSize')} needs a directory to write a media set into, not ${o.destination.where}`, { hint: `give ${param('to')} a directory` });
    }
  }

  get tapes(): readonly WrittenTape[] {
    return this.#written;
  }

  /**
   * Adds one record (its encoded 64-byte header and its data) to the current
   * segment. Both are copied before it returns: the caller may reuse them.
   */
  async add(kind: SegmentKind, header: RecordHeader, encoded: Buffer, data: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    if (this.#kind !== undefined && (kind !== this.#kind || this.#partBytes + RECORD_SIZE + data.length > this.#segmentBytes)) await this.#seal();
    this.#kind = kind;
    if (!this.#content) {
      // Room for the segment's header (written first once it is sealed), and for the largest of its records.
      this.#content = this.#o.pool.content(SEGMENT_HEADER_SIZE + Math.max(this.#segmentBytes, RECORD_SIZE + data.length));
      this.#content.length = SEGMENT_HEADER_SIZE;
    }
    this.#content.append(encoded);
    this.#content.append(data);
    this.#partBytes += RECORD_SIZE + data.length;
    this.#headers.push(header);
    this.#dataBytes += data.length;
    if (header.type === RecordType.Marker) this.#markers.push(markerInfo(header, data));
  }

  /** Seals the last segment and closes the last tape. Returns every tape written. */
  async finish(opts: { allowEmpty?: boolean } = {}): Promise<WrittenTape[]> {
    await this.#seal();
    await this.#waitBelow(0);
    await this.#writerDone;
    if (this.#failed) throw this.#failed;
    if (!this.#tape && opts.allowEmpty) this.#tape = await this.#openTape(0n);
    if (this.#tape) await this.#closeTape(true);
    return this.#written;
  }

  /** Removes the tape being written (tapes already committed stay). */
  async abort(): Promise<void> {
    this.#failed ??= new Error('aborted');
    await Promise.allSettled(this.#sealing.splice(0));
    await this.#writerDone;
    await this.#tape?.last.catch(() => undefined);
    await this.#tape?.out.abort();
    this.#tape = undefined;
  }

  async #seal(): Promise<void> {
    if (this.#headers.length === 0 || this.#kind === undefined || !this.#content) return;
    const content = this.#content;
    const headers = this.#headers;
    const kind = this.#kind;
    const dataBytes = this.#dataBytes;
    const markers = this.#markers;
    this.#markers = [];
    this.#raw += this.#partBytes;
    this.#content = undefined;
    this.#partBytes = 0;
    this.#headers = [];
    this.#dataBytes = 0;
    const number = ++this.#segNo;
    const p = this.#sealSegment(number, kind, content, headers, dataBytes, markers);
    p.catch(() => undefined);
    this.#sealing.push(p);
    this.#o.onProgress?.(this.#raw);
    this.#startWriter();
    await this.#waitBelow(MAX_SEALS_IN_FLIGHT);
  }

  async #sealSegment(number: number, kind: SegmentKind, content: FrameContent, headers: RecordHeader[], dataBytes: number, markers: MarkerInfo[]): Promise<Sealed> {
    const name = segmentName(number);
    const bodyBytes = content.length - SEGMENT_HEADER_SIZE;
    const first = headers[0] as RecordHeader;
    const last = headers[headers.length - 1] as RecordHeader;
    const key = this.#o.key;
    const header = (payloadBytes: number): Buffer => encodeSegmentHeader({
      kind,
      encrypted: key !== undefined,
      compressed: key !== undefined,
      count: headers.length,
      firstSeq: first.seq,
      lastSeq: last.seq,
      firstTs: first.timestamp,
      lastTs: last.timestamp,
      payloadBytes,
      number,
      mediaSetId: this.#mediaSetId,
      groupId: this.#o.groupId,
    });
    let body: FrameContent | Uint8Array[];
    let segmentBytes: number;
    if (key) {
      // Compressed, then encrypted (ciphertext does not compress): the records as one zstd frame, inside the encryption.
      const packed = await this.#o.pool.pack(content, SEGMENT_HEADER_SIZE);
      const sh = header(packed.length + ENCRYPTION_OVERHEAD);
      const sealed = encryptPayload(key, packed, segmentAad(sh), ...(this.#env.nonce ? [this.#env.nonce()] : []));
      body = [sh, sealed];
      segmentBytes = sh.length + sealed.length;
    } else {
      content.view(0, SEGMENT_HEADER_SIZE).set(header(bodyBytes));
      body = content;
      segmentBytes = content.length;
    }
    // The segment, then its hash in xxhsum's format: `tar -x` then `xxhsum -c` checks it with no jship.
    const { buf: frame, hash, release } = await this.#o.pool.frame(name, body, { mtime: new Date(Number(last.timestamp / 1_000_000n)), hashed: true });
    const info: SegmentInfo = {
      name,
      kind: kind === SegmentKind.Base ? 'base' : 'update',
      hash: hash as string,
      records: headers.length,
      firstSeq: first.seq.toString(),
      lastSeq: last.seq.toString(),
      firstTs: first.timestamp.toString(),
      lastTs: last.timestamp.toString(),
      bytes: segmentBytes,
    };
    return {
      info, frame, release, kind, markers, records: headers.length, dataBytes,
      first: { seq: first.seq, ts: first.timestamp }, last: { seq: last.seq, ts: last.timestamp },
    };
  }

  #startWriter(): void {
    if (this.#writerActive) return;
    this.#writerActive = true;
    this.#writerDone = (async () => {
      try {
        for (;;) {
          const head = this.#sealing[0];
          // Checked and cleared in one synchronous step: a segment queued after this starts a new loop.
          if (!head || this.#failed) return;
          await this.#emit(await head);
          this.#sealing.shift();
          this.#wake();
        }
      } catch (e) {
        this.#failed ??= e;
      } finally {
        this.#writerActive = false;
        this.#wake();
      }
    })();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Waits until at most `n` segments are in flight (sealing or waiting to be written). */
  async #waitBelow(n: number): Promise<void> {
    while (this.#sealing.length > n && !this.#failed) {
      if (!this.#writerActive) this.#startWriter();
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
    }
    if (this.#failed) throw this.#failed;
  }

  async #emit(s: Sealed): Promise<void> {
    this.#tape ??= await this.#openTape(s.first.seq);
    // The trailer lists every segment and marker: it must stay below the format's frame limit.
    const markers = this.#tape.segments.reduce((n, x) => n + x.markers.length, 0) + s.markers.length;
    const trailerFull = this.#tape.segments.length > 0 && trailerReserve(this.#tape.segments.length + 1, markers, 0, this.#o.volumes.length) > MAX_TRAILER_BYTES;
    if (trailerFull && !this.#o.destination.splittable) {
      throw new JshipError('TAPE_TOO_LARGE', `a tape written to ${this.#o.destination.where} can list at most about ${Math.floor(MAX_TRAILER_BYTES / 400)} segments in its trailer`, {
        hint: 'export more often, or to a directory (where the export continues on a further tape of its media set)',
      });
    }
    // The media set goes on on a further tape: the trailer is full, or the caller wants this one committed now.
    if (trailerFull || (this.#tape.segments.length > 0 && this.#o.destination.splittable && this.#o.cutWhen?.(this.#tape.recordBytes) === true)) {
      await this.#closeTape(false);
      this.#tape = await this.#openTape(s.first.seq);
    }
    const size = this.#o.mediaSize;
    if (size !== undefined) {
      const need = s.frame.length + this.#parityReserve(this.#tape, s.frame.length)
        + trailerReserve(this.#tape.segments.length + 1, this.#tape.segments.reduce((n, x) => n + x.markers.length, 0) + s.markers.length, this.#tape.parityRefs.length + 2, this.#o.volumes.length);
      if (this.#tape.bytes + need > size) {
        if (this.#tape.segments.length > 0) {
          await this.#closeTape(false);
          this.#tape = await this.#openTape(s.first.seq);
        }
        if (this.#tape.bytes + need > size) {
          throw new JshipError('MEDIA_TOO_SMALL', `${param('mediaSize')} ${formatSize(size)} cannot hold a label, one ${formatSize(s.frame.length)} segment and a trailer`, {
            hint: `give a ${param('mediaSize')} of at least ${formatSize(Math.max(size + 1, this.#tape.bytes + need))}`,
          });
        }
      }
    }
    await this.#writeFrame(this.#tape, s.frame, s.info.name, s.release);
    const { frame: _written, release: _released, ...meta } = s;
    this.#tape.segments.push(meta);
    this.#tape.recordBytes += s.dataBytes;
  }

  async #openTape(firstSeq: bigint): Promise<OpenTape> {
    const serial = this.#serial++;
    const label: TapeLabel = {
      format: 'jship-tape',
      version: TAPE_VERSION,
      groupId: this.#o.groupId,
      volumes: this.#o.volumes,
      serial,
      mediaSet: { id: this.#mediaSetId, index: this.#index++ },
      prevTapeSha256: this.#prevSha,
      createdAt: this.#env.now().toISOString(),
      host: this.#env.host,
      encryption: this.#o.key ? { algorithm: 'aes-256-gcm', keyId: this.#o.key.keyId } : null,
      ...(this.#o.zeroedTs !== undefined ? { zeroedTs: this.#o.zeroedTs } : {}),
      ...(this.#o.epochs && this.#o.epochs.length > 0 ? { epochs: this.#o.epochs } : {}),
      ...(this.#o.link ? { link: this.#o.link } : {}),
    };
    const { buf: frame, release } = await this.#o.pool.frame(LABEL_NAME, [encodeJson(label)], { mtime: this.#env.now() });
    const tape: OpenTape = {
      serial, index: label.mediaSet.index, label, out: await this.#o.destination.open(serial, firstSeq, generationOf(this.#o.epochs ?? []), label.groupId), hash: newHasher(tapeHashOf(label.version)), bytes: 0, recordBytes: 0, segments: [],
      group: { frames: [], bytes: 0, longest: 0 }, parityRefs: [], writes: [], last: Promise.resolve(),
    };
    this.#tape = tape;
    await this.#writeFrame(tape, frame, LABEL_NAME, release);
    return tape;
  }

  async #closeTape(last: boolean): Promise<void> {
    // Until it is committed, the tape stays where abort() finds it: a close that fails leaves nothing behind.
    const tape = this.#tape as OpenTape;
    await this.#writeParity(tape);
    const trailer = buildTrailer(tape, last, this.#o.base, this.#o.parity);
    // The digests of the points whose markers this tape holds (an export waits for one still being computed).
    const digests = trailer.updates && this.#o.digests ? await this.#o.digests(BigInt(trailer.updates.firstSeq), BigInt(trailer.updates.lastSeq)) : [];
    if (digests.length > 0) trailer.digests = digests;
    const { buf: frame, release } = await this.#o.pool.frame(TRAILER_NAME, [encodeTrailer(trailer)], { mtime: this.#env.now(), eof: true });
    await this.#write(tape, frame, release);
    await this.#drain(tape);
    const sha256 = tape.hash.digest();
    const updates = tape.segments.filter((s) => s.kind === SegmentKind.Update);
    const name = tapeName(tape.serial, updates.length > 0 ? { firstSeq: (updates[0] as SegmentWritten).first.seq, lastSeq: (updates[updates.length - 1] as SegmentWritten).last.seq } : null,
      tape.segments.some((s) => s.kind === SegmentKind.Base) ? this.#o.base?.baseId ?? null : null, generationOf(this.#o.epochs ?? []));
    const location = await tape.out.commit(name, async (finalPath) => {
      await this.#o.beforeCommit?.({ serial: tape.serial, finalPath, sha256, trailer });
    }, { sha256, bytes: tape.bytes });
    this.#tape = undefined;
    const written: WrittenTape = { serial: tape.serial, name, location, sha256, bytes: tape.bytes, label: tape.label, trailer };
    this.#written.push(written);
    this.#prevSha = sha256;
    await this.#o.onTape?.(written);
  }

  /**
   * Writes the label's or a segment's frame, then releases its memory; with
   * parity, into the current group (closed first if it would not fit),
   * whose frames are released once its parity is written.
   */
  async #writeFrame(tape: OpenTape, frame: Buffer, entry: string, release: () => void): Promise<void> {
    const percent = this.#o.parity;
    const g = tape.group;
    if (percent !== undefined && g.frames.length > 0 && !groupFits(g.frames.length + 1, g.bytes + frame.length, Math.max(g.longest, frame.length), percent)) await this.#writeParity(tape);
    const offset = tape.bytes;
    if (percent === undefined) {
      await this.#write(tape, frame, release);
      return;
    }
    await this.#write(tape, frame);
    tape.group.frames.push({ entry, offset, length: frame.length, sha256: createHash('sha256').update(frame).digest('hex'), buf: frame, release });
    tape.group.bytes += frame.length;
    tape.group.longest = Math.max(tape.group.longest, frame.length);
    if (!groupFits(tape.group.frames.length + 1, 0, 0, percent)) await this.#writeParity(tape);
  }

  /** Closes the current group: its parity frame follows its frames. */
  async #writeParity(tape: OpenTape): Promise<void> {
    const g = tape.group;
    const percent = this.#o.parity;
    if (percent === undefined || g.frames.length === 0) return;
    const shards = await encodeParity(g.frames.map((f) => f.buf), g.longest, parityShards(g.frames.length, percent));
    const number = tape.parityRefs.length + 1;
    const frame = await parityFrame({
      format: 'jship-parity', version: 1, number, shardBytes: g.longest,
      frames: g.frames.map(({ buf: _buf, release: _release, ...f }) => f),
      parity: shards.map((x) => createHash('sha256').update(x).digest('hex')),
    }, shards);
    tape.group = { frames: [], bytes: 0, longest: 0 };
    await this.#drain(tape);
    for (const f of g.frames) f.release();
    const offset = tape.bytes;
    await this.#write(tape, frame);
    tape.parityRefs.push({ name: parityJsonName(number), offset, length: frame.length, sha256: createHash('sha256').update(frame).digest('hex') });
  }

  /** Bytes of parity still to be written for the current group once a frame of `length` bytes joins it (bounded above). */
  #parityReserve(tape: OpenTape, length: number): number {
    const percent = this.#o.parity;
    if (percent === undefined) return 0;
    const g = tape.group;
    const bytes = (frames: number, longest: number): number => parityShards(frames, percent) * longest + 4096 + 200 * frames;
    return groupFits(g.frames.length + 1, g.bytes + length, Math.max(g.longest, length), percent)
      ? bytes(g.frames.length + 1, Math.max(g.longest, length))
      : bytes(g.frames.length, g.longest) + bytes(1, length);
  }

  /**
   * Hashes `chunk` into the tape's hash and queues it on the tape's output
   * after the writes before it (`written` runs once it is written: the
   * memory may go back); waits only while more than MAX_WRITES_QUEUED are
   * queued. A failed write fails the next #write or #drain of the tape, and
   * no later write starts. BLAKE3 takes about 0.2 ms per MiB on this
   * thread (DECISIONS, "The tape's hash is BLAKE3…").
   */
  async #write(tape: OpenTape, chunk: Buffer, written?: () => void): Promise<void> {
    tape.hash.update(chunk);
    tape.bytes += chunk.length;
    const w = tape.last.then(() => tape.out.write(chunk));
    const done = w.then(() => written?.());
    // Thrown where they are awaited: the next #write or #drain (and a failed write stops the later ones).
    for (const p of [w, done]) p.catch(() => undefined);
    tape.last = w;
    tape.writes.push(done);
    while (tape.writes.length > MAX_WRITES_QUEUED) await tape.writes.shift();
  }

  /** Waits until every write queued on the tape's output has ended; throws what failed. */
  async #drain(tape: OpenTape): Promise<void> {
    while (tape.writes.length > 0) await tape.writes.shift();
  }
}

function markerInfo(h: RecordHeader, data: Uint8Array): MarkerInfo {
  const p = decodeMarker(data);
  return {
    seq: h.seq.toString(), ts: h.timestamp.toString(), kind: p.kind,
    ...('name' in p ? { name: p.name } : {}),
    ...(p.kind === 'base-started' ? { baseId: h.seq.toString() } : 'baseId' in p ? { baseId: p.baseId } : {}),
  };
}

/**
 * The smallest --media-size that holds any tape a group can write: a label,
 * the largest segment (one record of `largestRecord` data bytes does not
 * split: records never span tapes) stored incompressible, and a trailer.
 */
export function minMediaSize(largestRecord: number, encrypted: boolean, volumes: number, parity?: number): number {
  const records = RECORD_SIZE + largestRecord;
  // Encrypted: the records as a zstd frame (header, 3 bytes a 128 KiB block, checksum) inside nonce and tag.
  const segment = SEGMENT_HEADER_SIZE + records + (encrypted ? ENCRYPTION_OVERHEAD + 22 + 3 * Math.ceil(records / (128 * 1024)) : 0);
  // tar: header and padding of the segment and its hash entry; zstd: frame header, 3 bytes per 128 KiB block, checksum.
  const frame = segment + 3 * 512 + 1024 + 32 + 3 * Math.ceil(segment / (128 * 1024));
  // The label's JSON (about 100 bytes a volume) in a tar entry, compressed no smaller than stored.
  const label = 2048 + 128 * volumes;
  // With parity, the label and that segment make a group: its parity shards are as long as the longer.
  const parityBytes = parity === undefined ? 0 : parityShards(2, parity) * Math.max(frame, label) + 4096 + 400;
  return label + frame + parityBytes + trailerReserve(1, 4, parity === undefined ? 0 : 1, volumes);
}

/** An upper bound of the trailer frame's size (JSON, tar headers, zstd overhead, end-of-archive). */
function trailerReserve(segments: number, markers: number, parityFrames = 0, volumes = 1): number {
  // A marker's entry, and (restore points, base completions) its digest: about 130 bytes a volume.
  return 4096 + 400 * segments + (460 + 130 * volumes) * markers + 200 * parityFrames;
}

function buildTrailer(tape: OpenTape, last: boolean, base: MediaSetOptions['base'], parity: number | undefined): TapeTrailer {
  const updates = tape.segments.filter((s) => s.kind === SegmentKind.Update);
  const bases = tape.segments.filter((s) => s.kind === SegmentKind.Base);
  const u0 = updates[0];
  const u1 = updates[updates.length - 1];
  const b0 = bases[0];
  const b1 = bases[bases.length - 1];
  return {
    format: 'jship-tape-trailer',
    version: 1,
    serial: tape.serial,
    mediaSet: { id: tape.label.mediaSet.id, index: tape.index, last },
    records: tape.segments.reduce((n, s) => n + s.records, 0),
    bytes: tape.segments.reduce((n, s) => n + s.dataBytes, 0),
    updates: u0 && u1 ? { firstSeq: u0.first.seq.toString(), lastSeq: u1.last.seq.toString(), firstTs: u0.first.ts.toString(), lastTs: u1.last.ts.toString() } : null,
    base: b0 && b1 && base ? {
      baseId: base.baseId.toString(), scope: base.scope, records: bases.reduce((n, s) => n + s.records, 0), firstPos: b0.first.seq.toString(), lastPos: b1.last.seq.toString(),
    } : null,
    markers: tape.segments.flatMap((s) => s.markers),
    segments: tape.segments.map((s) => s.info),
    ...(parity !== undefined ? { parity: { percent: parity, frames: tape.parityRefs } } : {}),
  };
}

