import { createHash } from 'node:crypto';
import { JshipError, isJshipError } from '../core/errors.js';
import { RecordType, type RecordHeader } from '../core/record.js';
import { frameSizeProblem, scanFrame, scanFrameAcross } from '../core/zstd-frames.js';
import { KeyRing, type TapeKey } from './crypto.js';

const NO_KEYS = new KeyRing([]);
import {
  LABEL_NAME, TRAILER_NAME, decodeLabel, decodeTrailer, type SegmentInfo, type TapeLabel, type TapeTrailer,
} from './label.js';
import { SEGMENT_HEADER_SIZE, SegmentKind, decodeSegmentHeader, openSegment, parseRecords, segmentName, type SegmentHeader } from './segment.js';
import { unframe, type TarEntry } from './tar-entry.js';
import { PARITY_ENTRY, decodeParityHeader, parityBinName, parityJsonName, type ParityFrameRef } from './parity.js';
import type { FramePool, Unframed } from './frame-pool.js';
import { SEGMENT_HASHES, hashSegment, parseSumLine, segmentHashOf, segmentHashReady, sumEntryName } from './segment-hash.js';

export interface TapeRecord {
  header: RecordHeader;
  data: Buffer;
}

export type TapeItem =
  | { type: 'label'; label: TapeLabel; offset: number; length: number }
  | { type: 'segment'; index: number; info: SegmentInfo; header: SegmentHeader; records: TapeRecord[]; offset: number; length: number }
  | { type: 'trailer'; trailer: TapeTrailer; offset: number; length: number };

export interface ReadTapeOptions {
  /** Names the tape in messages (its path). */
  where: string;
  /** The keys to open encrypted tapes with (each by the id its label names). */
  keys?: KeyRing;
  /** Decompresses on worker threads when given. */
  pool?: FramePool;
  /**
   * Called with every byte of the file as it is read (to hash or copy it), in
   * order; the next chunk is read while one call is still running (its
   * synchronous part runs at once). A call that throws ends the read with its error.
   */
  onBytes?: (chunk: Buffer) => void | Promise<void>;
  /**
   * Decompress into memory used again from frame to frame (with a pool): an
   * item's records and contents are valid only until the loop asks for the
   * next item. For callers that keep nothing of them but what they copy.
   */
  recycle?: boolean;
  /**
   * Called with each chunk of `source` once nothing of the read holds it any
   * more (its onBytes call has ended, and every frame in it was decoded and
   * handled), to be read into again (TapeSource.giveBack).
   */
  giveBack?: (chunk: Buffer) => void;
  /** Skip decrypting and parsing records: check frames, entries and hashes only. */
  structureOnly?: boolean;
}

/** What was verified before a tape turned out damaged or truncated. */
export interface TapeProgress {
  segments: number;
  records: number;
  lastSeq: bigint | null;
  offset: number;
}

/** Frames being decompressed (on the pool) while the next ones are read. */
const READ_AHEAD = 4;

/**
 * Reads a tape as it streams in: frame by frame (boundaries from the zstd
 * block headers), each frame one tar entry (core/tar-header.ts), each
 * segment checked against its SHA-256, decrypted and authenticated when the
 * tape is encrypted, and every record's CRCs verified. Yields the label,
 * each segment and the trailer. A premature end is TAPE_TRUNCATED, any
 * damage TAPE_DAMAGED (or TAPE_AUTH_FAILED), with `details` saying how much
 * was verified before it.
 */
export async function* readTape(source: AsyncIterable<Buffer | Uint8Array>, opts: ReadTapeOptions): AsyncGenerator<TapeItem> {
  await segmentHashReady();
  const progress: TapeProgress = { segments: 0, records: 0, lastSeq: null, offset: 0 };
  const fail = (code: 'TAPE_DAMAGED' | 'TAPE_TRUNCATED', message: string, hint: string, cause?: unknown): never => {
    throw new JshipError(code, `${opts.where}: ${message}`, {
      hint,
      details: { segmentsVerified: progress.segments, recordsVerified: progress.records, lastGoodSeq: progress.lastSeq?.toString() ?? null, offset: progress.offset },
      ...(cause !== undefined ? { cause } : {}),
    });
  };
  let label: TapeLabel | undefined;
  let key: TapeKey | undefined;
  let trailer: TapeTrailer | undefined;
  let sawEof = false;
  const seen: SegmentInfo[] = [];
  let nextUpdateSeq: bigint | undefined;
  let nextNumber: number | undefined;
  let index = 0;
  /** Frames since the last parity frame (label and segments), and the parity frames seen: checked against what parity lists. */
  let group: Array<{ entry: string; offset: number; length: number }> = [];
  const parityRefs: Array<Omit<ParityFrameRef, 'sha256'>> = [];

  const handle = async (frame: Unframed, offset: number, length: number): Promise<TapeItem | undefined> => {
    if (sawEof || trailer) {
      if (frame.allZero) {
        sawEof = true;
        return undefined;
      }
      return fail('TAPE_DAMAGED', `data after the ${sawEof ? 'end of the archive' : 'trailer'} at byte ${offset}`, 'the file holds more than one tape or was appended to');
    }
    const entries = frame.entries;
    const entry = entries[0];
    if (!entry) return fail('TAPE_DAMAGED', `frame at byte ${offset} holds no tar entry`, 'the tape is damaged');
    if (!label) {
      if (entry.name !== LABEL_NAME || entries.length !== 1) {
        throw new JshipError('TAPE_BAD_LABEL', `${opts.where} does not start with a jship label (first entry: ${entry.name})`, {
          hint: 'this is not a jship tape (a plain tar archive?)',
        });
      }
      label = decodeLabel(entry.content, `${opts.where} label`);
      // An encrypted tape is never read without its key: refused at the label, before any segment.
      if (label.encryption && !opts.structureOnly) key = (opts.keys ?? NO_KEYS).need(label.encryption.keyId, opts.where);
      group.push({ entry: LABEL_NAME, offset, length });
      return { type: 'label', label, offset, length };
    }
    if (entry.name === TRAILER_NAME) {
      if (entries.length !== 1) fail('TAPE_DAMAGED', 'entries after the trailer', 'the tape was assembled from parts');
      trailer = decodeTrailer(entry.content, `${opts.where} trailer`);
      sawEof = frame.endsWithEof;
      const listed = trailer.segments;
      if (listed.length !== seen.length || listed.some((x, i) => x.name !== seen[i]?.name || x.hash !== seen[i]?.hash || x.records !== seen[i]?.records)) {
        fail('TAPE_DAMAGED', `the trailer lists ${listed.length} segments, the tape holds ${seen.length} that do not all match it`, 'the tape is damaged or was assembled from parts');
      }
      if (trailer.serial !== label.serial) fail('TAPE_DAMAGED', `the trailer says serial ${trailer.serial}, the label ${label.serial}`, 'the tape was assembled from parts');
      const refs = trailer.parity?.frames ?? [];
      if (refs.length !== parityRefs.length || refs.some((r, i) => r.name !== parityRefs[i]?.name || r.offset !== parityRefs[i]?.offset || r.length !== parityRefs[i]?.length)
        || (trailer.parity !== undefined && group.length > 0)) {
        fail('TAPE_DAMAGED', `the trailer lists ${refs.length} parity frames, the tape holds ${parityRefs.length}${group.length > 0 && trailer.parity ? ` and ${group.length} frames after the last` : ''}`, 'the tape is damaged or was assembled from parts');
      }
      return { type: 'trailer', trailer, offset, length };
    }
    if (PARITY_ENTRY.test(entry.name)) return parity(entries, offset, length);
    return segment(entries, offset, length);
  };

  /** A parity frame: its header must list exactly the frames before it since the last one; its shards must match their hashes. */
  const parity = (entries: TarEntry[], offset: number, length: number): undefined => {
    const n = parityRefs.length + 1;
    const [json, bin] = entries;
    if (entries.length !== 2 || json?.name !== parityJsonName(n) || bin?.name !== parityBinName(n)) {
      return fail('TAPE_DAMAGED', `parity frame at byte ${offset} is not ${parityJsonName(n)} and its shards`, 'the tape is damaged or was assembled from parts');
    }
    const h = decodeParityHeader(json.content, `${opts.where} ${json.name}`);
    if (h.number !== n || h.frames.length !== group.length || h.frames.some((f, i) => f.entry !== group[i]?.entry || f.offset !== group[i]?.offset || f.length !== group[i]?.length)) {
      fail('TAPE_DAMAGED', `${json.name} lists frames that are not the ${group.length} before it`, 'the tape is damaged or was assembled from parts');
    }
    if (bin.content.length !== h.parity.length * h.shardBytes || h.parity.some((sha, i) => createHash('sha256').update(bin.content.subarray(i * h.shardBytes, (i + 1) * h.shardBytes)).digest('hex') !== sha)) {
      fail('TAPE_DAMAGED', `${bin.name}: its parity shards do not match their hashes`, 'the parity frame is damaged');
    }
    parityRefs.push({ name: json.name, offset, length });
    group = [];
    return undefined;
  };

  const segment = (entries: TarEntry[], offset: number, length: number): TapeItem => {
    const [entry, sum] = entries as [TarEntry, TarEntry | undefined];
    const lab = label as TapeLabel;
    if (!/^segments\/\d{8}\.jrs$/.test(entry.name)) fail('TAPE_DAMAGED', `unexpected entry "${entry.name}"`, 'the tape holds entries jship does not write');
    // The hash of the label's version (SHA-256 up to 3, XXH3-128 from 4), in the sum entry that follows the segment.
    const algorithm = segmentHashOf(lab.version);
    const expected = sum && entries.length === 2 && sum.name === sumEntryName(entry.name, algorithm) ? parseSumLine(sum.content, algorithm) : undefined;
    if (!expected) fail('TAPE_DAMAGED', `segment ${entry.name} is not followed by its ${SEGMENT_HASHES[algorithm].title} entry (${sumEntryName(entry.name, algorithm)}), as a version ${lab.version} tape has`, 'the tape is damaged or was assembled from parts');
    const hash = entry.hash ?? hashSegment(algorithm, entry.content);
    if (hash !== expected) fail('TAPE_DAMAGED', `segment ${entry.name}: ${SEGMENT_HASHES[algorithm].title} mismatch`, 'the segment is damaged');
    const sh = decodeSegmentHeader(entry.content, `${opts.where} ${entry.name}`);
    if (sh.encrypted !== !!lab.encryption) fail('TAPE_DAMAGED', `segment ${entry.name}: encryption flag contradicts the label`, 'the tape was assembled from parts');
    if (sh.compressed && lab.version < 3) fail('TAPE_DAMAGED', `segment ${entry.name} is compressed inside its encryption, which a version ${lab.version} tape never is`, 'the tape was assembled from parts');
    // The segment is bound to this tape: its group, its export's media set, its place in it.
    if (sh.groupId !== lab.groupId || sh.mediaSetId !== lab.mediaSet.id) {
      fail('TAPE_DAMAGED', `segment ${entry.name} belongs to another tape (group ${sh.groupId}, media set ${sh.mediaSetId}; this tape's label says group ${lab.groupId}, media set ${lab.mediaSet.id})`, 'a segment was spliced in from another tape (of a copied group directory, say): only the segments before it are this tape\'s');
    }
    const expectedNumber = nextNumber ?? (lab.mediaSet.index === 0 ? 1 : undefined);
    if (entry.name !== segmentName(sh.number) || (expectedNumber !== undefined && sh.number !== expectedNumber)) {
      fail('TAPE_DAMAGED', `segment ${entry.name} is number ${sh.number} of its media set, at the place of number ${expectedNumber ?? '?'}`, 'segments were moved or reordered: only the segments before it are in their place');
    }
    nextNumber = sh.number + 1;
    let records: TapeRecord[] = [];
    if (!opts.structureOnly) {
      let payload = entry.content.subarray(SEGMENT_HEADER_SIZE);
      if (sh.encrypted && key) {
        payload = openSegment(key, entry.content, sh, `${opts.where} ${entry.name}`);
      }
      records = parseRecords(payload, sh, `${opts.where} ${entry.name}`);
      for (const r of records) {
        if (r.header.volume !== 0xffff && r.header.volume >= lab.volumes.length) fail('TAPE_DAMAGED', `record ${r.header.seq} names volume ${r.header.volume}; the tape has ${lab.volumes.length}`, 'the tape is damaged');
        if ((sh.kind === SegmentKind.Base) !== (r.header.type === RecordType.Base)) fail('TAPE_DAMAGED', `record ${r.header.seq} does not belong in a ${sh.kind === SegmentKind.Base ? 'base' : 'update'} segment`, 'the tape is damaged');
        if (sh.kind === SegmentKind.Update) {
          if (nextUpdateSeq !== undefined && r.header.seq !== nextUpdateSeq) fail('TAPE_DAMAGED', `record ${r.header.seq} follows ${nextUpdateSeq - 1n}: sequence gap inside the tape`, 'the tape is damaged');
          nextUpdateSeq = r.header.seq + 1n;
        }
      }
    }
    const info: SegmentInfo = {
      name: entry.name,
      kind: sh.kind === SegmentKind.Base ? 'base' : 'update',
      hash,
      records: sh.count,
      firstSeq: sh.firstSeq.toString(),
      lastSeq: sh.lastSeq.toString(),
      firstTs: sh.firstTs.toString(),
      lastTs: sh.lastTs.toString(),
      bytes: entry.content.length,
    };
    seen.push(info);
    group.push({ entry: entry.name, offset, length });
    progress.segments++;
    progress.records += sh.count;
    if (sh.kind === SegmentKind.Update) progress.lastSeq = sh.lastSeq;
    return { type: 'segment', index: index++, info, header: sh, records, offset, length };
  };

  // Frames are cut from the stream, decompressed ahead (on the pool), handled in order.
  const parts: Buffer[] = [];
  let partsLen = 0;
  let buf: Buffer = Buffer.alloc(0);
  let bufStart = 0; // file offset of buf[0]
  let want = 0;
  // Frames cut from the stream wait here compressed; at most READ_AHEAD are being decompressed.
  const cutFrames: Array<{ offset: number; length: number; frame: Buffer; contentSize: number }> = [];
  const pending: Array<{ offset: number; length: number; out: Promise<Unframed & { release?: () => void }> }> = [];
  /** Hands the memory of the item last yielded back to the pool (with `recycle`). */
  let release: (() => void) | undefined;
  const decode = (frame: Buffer, offset: number, contentSize: number): Promise<Unframed & { release?: () => void }> => {
    if (opts.pool) return opts.pool.unframe(frame, opts.recycle ? { recycle: contentSize } : {});
    try {
      return Promise.resolve(unframe(frame, `${opts.where} at byte ${offset}`));
    } catch (e) {
      return Promise.reject(e);
    }
  };
  const startDecoding = (): void => {
    while (pending.length < READ_AHEAD && cutFrames.length > 0) {
      const f = cutFrames.shift() as { offset: number; length: number; frame: Buffer; contentSize: number };
      const out = decode(f.frame, f.offset, f.contentSize);
      out.catch(() => undefined);
      pending.push({ offset: f.offset, length: f.length, out });
    }
  };
  const drainOne = async (): Promise<TapeItem | undefined> => {
    startDecoding();
    const p = pending.shift();
    if (!p) return undefined;
    let frame: Unframed & { release?: () => void };
    try {
      frame = await p.out;
      release = frame.release;
    } catch (e) {
      if (isJshipError(e)) throw e;
      return fail('TAPE_DAMAGED', `frame at byte ${p.offset} does not decompress (${(e as Error).message})`, 'the tape is damaged at this point; the records before it were verified', e);
    }
    progress.offset = p.offset;
    try {
      return await handle(frame, p.offset, p.length);
    } catch (e) {
      if (isJshipError(e) && !('segmentsVerified' in e.details)) {
        Object.assign(e.details, { segmentsVerified: progress.segments, recordsVerified: progress.records, lastGoodSeq: progress.lastSeq?.toString() ?? null, offset: p.offset });
      }
      throw e;
    }
  };
  // Where the stream stops being frames: reported once the frames cut before it are handled (and kept).
  let damaged: string | undefined;
  const cut = (): void => {
    for (;;) {
      const s = scanFrame(buf, 0);
      if (s.kind === 'need-more') {
        want = Math.max(buf.length * 2, buf.length + 64 * 1024);
        return;
      }
      if (s.kind === 'invalid') {
        if (buf.every((b) => b === 0)) return; // padding after the end of the archive (tape devices pad blocks)
        damaged = `no zstd frame at byte ${bufStart} (${s.why})`;
        return;
      }
      const tooBig = frameSizeProblem(s);
      if (tooBig) {
        damaged = `the frame at byte ${bufStart} is not read: ${tooBig}`;
        return;
      }
      cutFrames.push({ offset: bufStart, length: s.length, frame: buf.subarray(0, s.length), contentSize: s.contentSize ?? 0 });
      buf = buf.subarray(s.length);
      bufStart += s.length;
      want = 0;
    }
  };

  /**
   * Joins the chunks read to the unread rest and cuts their frames, copying
   * no more than it must: a chunk after nothing unread is cut where it lies;
   * a rest (a frame the chunk before cut short) is joined with only as much
   * of the next chunk as completes it, and the chunk's remainder is cut
   * uncopied (a source never changes a chunk it yielded: tape-source.ts).
   */
  const joinAndCut = (): void => {
    const only = parts.length === 1 ? parts[0] : undefined;
    const whole = only === undefined ? Buffer.concat([buf, ...parts]) : buf.length === 0 ? only : undefined;
    parts.length = 0;
    partsLen = 0;
    if (whole || !only) {
      buf = whole ?? buf;
      cut();
      return;
    }
    // The rest starts a frame the chunk before cut short: where does it end?
    const rest = buf;
    const s = scanFrameAcross(rest, only);
    if (s.kind === 'frame' && s.length > rest.length) {
      // That frame is joined; the chunk after it is cut where it lies.
      buf = Buffer.concat([rest, only.subarray(0, s.length - rest.length)]);
      cut();
      if (buf.length === 0 && !damaged) {
        buf = only.subarray(s.length - rest.length);
        cut();
      }
    } else {
      // Padding, damage, a frame longer than the chunk: joined whole, as it comes.
      buf = Buffer.concat([rest, only]);
      cut();
    }
  };

  /** The chunks read and not given back (with giveBack), oldest first: where each ends in the file, and whether its onBytes call has ended. */
  const held: Array<{ chunk: Buffer; end: number; handed: boolean }> = [];
  let readEnd = 0;
  /**
   * Gives back the chunks that lie wholly before the first frame not yet
   * handled: every view into a chunk (a frame cut from it, waiting or being
   * decoded; the unread rest) starts at or after that frame's offset.
   */
  const giveBackDone = (): void => {
    if (!opts.giveBack) return;
    const low = pending[0]?.offset ?? cutFrames[0]?.offset ?? bufStart;
    for (let h = held[0]; h && h.end <= low && h.handed; h = held[0]) {
      held.shift();
      opts.giveBack(h.chunk);
    }
  };
  // One onBytes call runs while the next chunk is read and its frames decoded.
  let handing: Promise<void> | undefined;
  const handOn = async (c: Buffer): Promise<void> => {
    if (!opts.onBytes) return;
    await handing;
    const h = Promise.resolve(opts.onBytes(c));
    h.catch(() => undefined);
    handing = h;
  };
  try {
    for await (const chunk of source) {
      const c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      await handOn(c);
      if (opts.giveBack) {
        // The onBytes calls of the chunks before this one have ended (handOn waited for them).
        for (const h of held) h.handed = true;
        held.push({ chunk: c, end: (readEnd += c.length), handed: !opts.onBytes });
      }
      parts.push(c);
      partsLen += c.length;
      if (buf.length + partsLen < want) continue;
      joinAndCut();
      startDecoding();
      // Frames are handled until READ_AHEAD are left decoding: the next chunk is read meanwhile.
      while (cutFrames.length > 0 || pending.length >= READ_AHEAD) {
        const item = await drainOne();
        if (item) yield item;
        release?.();
        release = undefined;
        giveBackDone();
      }
      if (damaged) break;
    }
    await handing;
    for (const h of held) h.handed = true;
  } finally {
    // Never left running behind the reader (its caller closes what it writes to).
    await handing?.catch(() => undefined);
  }
  if (partsLen > 0 && !damaged) joinAndCut();
  while (pending.length > 0 || cutFrames.length > 0) {
    const item = await drainOne();
    if (item) yield item;
    release?.();
    release = undefined;
    giveBackDone();
  }
  if (damaged) fail('TAPE_DAMAGED', damaged, 'the tape is damaged at this point, or it is not a zstd-compressed jship tape');
  if (!label) {
    if (bufStart === 0 && buf.length === 0) fail('TAPE_TRUNCATED', 'the file is empty', 'the copy of this tape is empty: copy it again');
    fail('TAPE_TRUNCATED', 'ends before its label is complete', 'the copy is cut short: copy the tape again');
  }
  if (buf.length > 0 && !buf.every((b) => b === 0)) {
    fail('TAPE_TRUNCATED', `ends inside a frame at byte ${bufStart} (${buf.length} bytes of it present)`, 'the copy is cut short: copy the tape again; the records before this point were verified');
  }
  if (!trailer) fail('TAPE_TRUNCATED', 'ends without its trailer', 'the copy is cut short: copy the tape again; the records before this point were verified');
  if (!sawEof) fail('TAPE_TRUNCATED', 'ends without the end-of-archive blocks', 'the copy is cut short: copy the tape again');
}
