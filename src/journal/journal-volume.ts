import { constants, promises as fsp } from 'node:fs';
import { JshipError, isJshipError, param } from '../core/errors.js';
import { planLayout, ringPieces, type JournalLayout } from '../core/journal-layout.js';
import { piecesOf, type Bytes } from '../core/bytes.js';
import {
  RECORD_SIZE, dataLength, decodeRecord, verifyData, type RecordHeader,
} from '../core/record.js';
import {
  SB_CLEAN, SUPERBLOCK_SLOT, decodeSuperblock, encodeSuperblock, type Superblock,
} from '../core/superblock.js';
import { readFully, syncDir, writeFully, writeFullySync } from '../io/files.js';
import { dirname } from 'node:path';

/** A record read back from the journal: its header and its data (empty when it has none). */
export interface JournalRecord {
  header: RecordHeader;
  data: Buffer;
}

/** A record to be written: its encoded 64-byte header, and its data. */
export interface EncodedRecord {
  seq: bigint;
  dataPos: bigint;
  header: Buffer;
  /** In one piece or several (a payload as the socket's reads hold it), written as they are. */
  data: Bytes | undefined;
}

export interface RecoveryReport {
  /** First sequence number after the recovered log. */
  endSeq: bigint;
  /** Records found past the durable checkpoint (written but not flushed before the stop). */
  recoveredTail: number;
  /** Why the scan stopped past the checkpoint, when it stopped on something other than an empty slot. */
  tailStop: string | undefined;
}

/** Slots and bytes kept free for markers, so that "suspended" can always be journaled. */
export const MARKER_RESERVE_SLOTS = 8n;
export const MARKER_RESERVE_BYTES = 16n * 1024n;

const SCAN_SLOTS = 1024;
/** Data bytes readRecords takes at most in one call (past one record). */
export const READ_BATCH_BYTES = 4 * 1024 * 1024;
/** A batch of at most this many bytes (data and headers) is written from the event loop's thread, not the pool. */
export const SYNC_WRITE_BYTES = 64 * 1024;

/**
 * The journal volume: one preallocated file holding a ring of 64-byte
 * metadata records and a ring of data (patent §0060-0061, §0074-0076).
 *
 * Pointers (all logical, never wrapping; the physical place is modulo the ring):
 * - journal-out (`outSeq`, `outDataPos`): the oldest unpurged record;
 * - written (`writtenSeq`, `writtenPos`): the end of what is in the file;
 * - allocated (`allocSeq`, `allocPos`): the end of what has been given out;
 * - head (in the superblock): the end of what is known durable.
 *
 * Sequence numbers double as metadata indexes: record `seq` lives in slot
 * `seq mod metaSlots`.
 */
export class JournalVolume {
  readonly path: string;
  readonly layout: JournalLayout;
  readonly groupId: string;
  readonly #h: fsp.FileHandle;
  #sb: Superblock;
  outSeq: bigint;
  outDataPos: bigint;
  writtenSeq: bigint;
  writtenPos: bigint;
  allocSeq: bigint;
  allocPos: bigint;
  #closed = false;
  #sbChain: Promise<void> = Promise.resolve();
  /** The end of the records known durable (an fdatasync covered them): every superblock written carries it as its checkpoint. */
  #durable: { seq: bigint; pos: bigint };

  private constructor(path: string, h: fsp.FileHandle, sb: Superblock) {
    this.path = path;
    this.#h = h;
    this.#sb = sb;
    this.groupId = sb.groupId;
    this.layout = { journalSize: sb.journalSize, metaOffset: sb.metaOffset, metaSlots: sb.metaSlots, dataOffset: sb.dataOffset, dataSize: sb.dataSize };
    this.outSeq = sb.outSeq;
    this.outDataPos = sb.outDataPos;
    this.writtenSeq = sb.headSeq;
    this.writtenPos = sb.headDataPos;
    this.allocSeq = sb.headSeq;
    this.allocPos = sb.headDataPos;
    this.#durable = { seq: sb.headSeq, pos: sb.headDataPos };
  }

  /**
   * Creates a journal file of `size` bytes, preallocated by writing zeroes (so
   * that a full disk shows now, not at the first write). Refuses an existing file.
   * `start`: its first record's sequence number and the last timestamp issued
   * before it (a promoted group continues the sequence and clock of the
   * records it descends from); default 1 and 0.
   */
  static async create(path: string, size: number, groupId: string, onProgress?: (done: number, total: number) => void, start: { seq: bigint; lastTimestamp: bigint } = { seq: 1n, lastTimestamp: 0n }): Promise<void> {
    const layout = planLayout(size);
    let h: fsp.FileHandle;
    try {
      h = await fsp.open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new JshipError('IO', `cannot create journal ${path}: ${(e as Error).message}`, { hint: 'check the directory and its permissions' });
      // Never "remove it" when it is another group's journal: that group's unexported writes are in it.
      const theirs = await readJournalSuperblock(path).then((sb) => sb.groupId, () => undefined);
      throw new JshipError('GROUP_EXISTS', `cannot create journal ${path}: ${theirs ? `it is the journal of jship group ${theirs}` : 'the file exists already'}`, {
        hint: theirs ? `choose another path for this group's ${param('journalPath')}` : `choose another path for the ${param('journalPath')}; remove the file only if you are sure nothing needs what it holds (it may be a volume)`,
      });
    }
    try {
      const zero = Buffer.alloc(4 * 1024 * 1024);
      for (let off = 0; off < size; off += zero.length) {
        await writeFully(h, zero.subarray(0, Math.min(zero.length, size - off)), off);
        onProgress?.(Math.min(size, off + zero.length), size);
      }
      const sb: Superblock = { ...layout, flags: SB_CLEAN, groupId, generation: 1n, outSeq: start.seq, outDataPos: 0n, headSeq: start.seq, headDataPos: 0n, appliedSeq: start.seq - 1n, lastTimestamp: start.lastTimestamp };
      // Generation g lives in copy g mod 2: the next write (generation 2) replaces copy 0.
      await writeFully(h, encodeSuperblock({ ...sb, generation: 0n }), 0);
      await writeFully(h, encodeSuperblock(sb), SUPERBLOCK_SLOT);
      await h.sync();
    } catch (e) {
      await h.close();
      await fsp.rm(path, { force: true });
      throw new JshipError('IO', `cannot write journal ${path}: ${(e as Error).message}`, { hint: 'check the free space of its file system', cause: e });
    }
    await h.close();
    await syncDir(dirname(path));
  }

  /** Opens a journal file: reads both superblock copies and takes the newest valid one. */
  static async open(path: string, expectGroupId?: string): Promise<JournalVolume> {
    let h: fsp.FileHandle;
    try {
      h = await fsp.open(path, constants.O_RDWR);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new JshipError(code === 'ENOENT' ? 'GROUP_BAD_CONFIG' : 'IO', `cannot open journal ${path}: ${(e as Error).message}`, {
        hint: code === 'ENOENT' ? 'the journal named in the group config is missing: restore it from where it was moved' : 'check its permissions',
      });
    }
    try {
      const sb = await readSuperblocks(h, path);
      if (expectGroupId !== undefined && sb.groupId !== expectGroupId) {
        throw new JshipError('JOURNAL_MISMATCH', `journal ${path} belongs to group ${sb.groupId}, not ${expectGroupId}`, {
          hint: 'the group config points at another group\'s journal; fix the journal path in group.json',
        });
      }
      const st = await h.stat();
      if (st.size < sb.journalSize) {
        throw new JshipError('JOURNAL_CORRUPT', `journal ${path} has ${st.size} bytes, its superblock says ${sb.journalSize}`, {
          hint: 'the journal file was truncated; restore it from a copy',
        });
      }
      return new JournalVolume(path, h, sb);
    } catch (e) {
      await h.close();
      throw e;
    }
  }

  get superblock(): Readonly<Superblock> {
    return this.#sb;
  }

  get appliedSeq(): bigint {
    return this.#sb.appliedSeq;
  }

  get lastTimestamp(): bigint {
    return this.#sb.lastTimestamp;
  }

  /** Records held (allocated, not purged) and data bytes held. */
  usage(): { records: bigint; bytes: bigint; metaFraction: number; dataFraction: number } {
    const records = this.allocSeq - this.outSeq;
    const bytes = this.allocPos - this.outDataPos;
    return {
      records,
      bytes,
      metaFraction: Number(records) / this.layout.metaSlots,
      dataFraction: Number(bytes) / this.layout.dataSize,
    };
  }

  /** Whether `count` more records with `bytes` of data fit, keeping the marker reserve unless `useReserve`. */
  fits(count: number, bytes: number, useReserve: boolean): boolean {
    const slots = BigInt(this.layout.metaSlots) - (useReserve ? 0n : MARKER_RESERVE_SLOTS);
    const data = BigInt(this.layout.dataSize) - (useReserve ? 0n : MARKER_RESERVE_BYTES);
    return this.allocSeq - this.outSeq + BigInt(count) <= slots && this.allocPos - this.outDataPos + BigInt(bytes) <= data;
  }

  /** The largest data one record may carry in this journal (a quarter of the data ring, at most 32 MiB). */
  get maxRecordData(): number {
    return Math.min(32 * 1024 * 1024, Math.floor(this.layout.dataSize / 4));
  }

  /** Gives out the next sequence number and data position. The caller has checked `fits`. */
  allocate(dataBytes: number): { seq: bigint; dataPos: bigint } {
    const r = { seq: this.allocSeq, dataPos: this.allocPos };
    this.allocSeq += 1n;
    this.allocPos += BigInt(dataBytes);
    return r;
  }

  /**
   * Writes records `writtenSeq..` (contiguous, in order): data and headers
   * side by side. Nothing orders them on disk without an fdatasync between
   * (a power cut can keep either), so the tail past the durable head is
   * trusted only where each header's data CRC matches what is there.
   */
  async writeBatch(batch: EncodedRecord[]): Promise<void> {
    const first = batch[0];
    if (!first) return;
    if (first.seq !== this.writtenSeq || first.dataPos !== this.writtenPos) {
      throw new Error(`journal batch out of order: seq ${first.seq} at ${first.dataPos}, expected ${this.writtenSeq} at ${this.writtenPos}`);
    }
    const { metaOffset, metaSlots, dataOffset, dataSize } = this.layout;
    const buffers: Uint8Array[] = [];
    let dataBytes = 0;
    for (const r of batch) {
      if (!r.data) continue;
      for (const piece of piecesOf(r.data)) {
        if (piece.length === 0) continue;
        buffers.push(piece);
        dataBytes += piece.length;
      }
    }
    const meta = Buffer.allocUnsafe(batch.length * RECORD_SIZE);
    batch.forEach((r, i) => r.header.copy(meta, i * RECORD_SIZE));
    const dataPieces = dataBytes > 0 ? ringPieces(dataOffset, dataSize, first.dataPos, dataBytes) : [];
    const metaPieces = ringPieces(metaOffset, metaSlots * RECORD_SIZE, first.seq * BigInt(RECORD_SIZE), meta.length);
    if (dataBytes + meta.length <= SYNC_WRITE_BYTES) {
      // A small batch (a lone 4 KiB write) is copied into the page cache from this thread: two trips to the
      // thread pool and back cost more than the copies (DECISIONS.md, "A lone small write stays on the event loop's thread").
      let rest = buffers;
      for (const piece of dataPieces) {
        const [take, left] = splitBuffers(rest, piece.len);
        writevFullySync(this.#h.fd, take, piece.pos);
        rest = left;
      }
      let done = 0;
      for (const piece of metaPieces) {
        writeFullySync(this.#h.fd, meta.subarray(done, done + piece.len), piece.pos);
        done += piece.len;
      }
      this.writtenSeq = first.seq + BigInt(batch.length);
      this.writtenPos = first.dataPos + BigInt(dataBytes);
      return;
    }
    // One round trip to the thread pool, not two: a header whose data did not land fails its data CRC,
    // and recovery ends the journal before it.
    const data = (async (): Promise<void> => {
      let rest = buffers;
      for (const piece of dataPieces) {
        const [take, left] = splitBuffers(rest, piece.len);
        await writevFully(this.#h, take, piece.pos);
        rest = left;
      }
    })();
    const headers = (async (): Promise<void> => {
      let done = 0;
      for (const piece of metaPieces) {
        await writeFully(this.#h, meta.subarray(done, done + piece.len), piece.pos);
        done += piece.len;
      }
    })();
    await Promise.all([data, headers]);
    this.writtenSeq = first.seq + BigInt(batch.length);
    this.writtenPos = first.dataPos + BigInt(dataBytes);
  }

  /** Reads the raw headers of `count` records from `seq` (which must be within the ring). */
  async readHeaders(seq: bigint, count: number): Promise<Buffer> {
    const { metaOffset, metaSlots } = this.layout;
    const buf = Buffer.allocUnsafe(count * RECORD_SIZE);
    let done = 0;
    for (const piece of ringPieces(metaOffset, metaSlots * RECORD_SIZE, seq * BigInt(RECORD_SIZE), buf.length)) {
      await readFully(this.#h, piece.len, piece.pos, buf, done);
      done += piece.len;
    }
    return buf;
  }

  /** The largest data length of the records from..to (inclusive), from their headers alone. */
  async largestData(from: bigint, to: bigint): Promise<number> {
    let max = 0;
    for (let seq = from; seq <= to;) {
      const n = Number(to - seq + 1n < 4096n ? to - seq + 1n : 4096n);
      const raw = await this.readHeaders(seq, n);
      for (let i = 0; i < n; i++) {
        const len = dataLength(decodeRecord(raw, i * RECORD_SIZE, `journal record ${seq + BigInt(i)}`));
        if (len > max) max = len;
      }
      seq += BigInt(n);
    }
    return max;
  }

  /** Reads `length` bytes of the data ring from logical position `pos` (into `into` when it is large enough). */
  async readData(pos: bigint, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    for (const piece of ringPieces(this.layout.dataOffset, this.layout.dataSize, pos, length)) {
      await readFully(this.#h, piece.len, piece.pos, buf, done);
      done += piece.len;
    }
    return buf;
  }

  /**
   * Reads up to `max` verified records from `seq`, stopping at the written end
   * or before `maxBytes` of data. Throws JOURNAL_PURGED when `seq` is gone and
   * JOURNAL_CORRUPT when a record fails its checks. With `into`, the data is
   * read into it when it fits (the records' data are views of it).
   */
  async readRecords(seq: bigint, max: number, maxBytes = READ_BATCH_BYTES, into?: Buffer): Promise<JournalRecord[]> {
    this.#checkReadable(seq);
    const count = Number(bigMin(BigInt(max), this.writtenSeq - seq));
    if (count <= 0) return [];
    const raw = await this.readHeaders(seq, count);
    const headers: RecordHeader[] = [];
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const h = this.#decodeAt(raw, i, seq + BigInt(i));
      const len = dataLength(h);
      if (headers.length > 0 && bytes + len > maxBytes) break;
      headers.push(h);
      bytes += len;
    }
    const firstH = headers[0];
    if (!firstH) return [];
    const data = bytes > 0 ? await this.readData(firstH.dataPos, bytes, into) : Buffer.alloc(0);
    // The ring may have been purged and reused while we read: check the range still holds.
    this.#checkReadable(seq);
    const out: JournalRecord[] = [];
    let off = 0;
    for (const h of headers) {
      const len = dataLength(h);
      const d = data.subarray(off, off + len);
      off += len;
      try {
        verifyData(h, d, `journal ${this.path}`);
      } catch (e) {
        throw corrupt(this.path, h.seq, (e as Error).message);
      }
      out.push({ header: h, data: d });
    }
    return out;
  }

  #decodeAt(raw: Buffer, i: number, expectSeq: bigint): RecordHeader {
    let h: RecordHeader;
    try {
      h = decodeRecord(raw, i * RECORD_SIZE, `journal ${this.path} slot of seq ${expectSeq}`);
    } catch (e) {
      throw corrupt(this.path, expectSeq, (e as Error).message);
    }
    if (h.seq !== expectSeq) throw corrupt(this.path, expectSeq, `slot holds seq ${h.seq}`);
    return h;
  }

  #checkReadable(seq: bigint): void {
    if (seq < this.outSeq) {
      throw new JshipError('JOURNAL_PURGED', `journal record ${seq} was purged (the journal now starts at ${this.outSeq})`, {
        hint: 'records are purged once exported; read them from the tapes instead',
        details: { seq, outSeq: this.outSeq },
      });
    }
  }

  /**
   * Recovery after open: checks every record from journal-out up to the
   * durable checkpoint (a bad one is corruption, named by its sequence
   * number), then takes every intact record after it (written before a crash
   * but not flushed); the first record that is missing, torn or stale ends
   * the log there. `visit` sees every recovered header in order.
   */
  async recover(visit: (h: RecordHeader) => void | Promise<void>): Promise<RecoveryReport> {
    const { headSeq, headDataPos } = this.#sb;
    let seq = this.outSeq;
    let pos = this.outDataPos;
    while (seq < headSeq) {
      const n = Number(bigMin(BigInt(SCAN_SLOTS), headSeq - seq));
      const raw = await this.readHeaders(seq, n);
      for (let i = 0; i < n; i++) {
        const h = this.#decodeAt(raw, i, seq);
        if (h.dataPos !== pos) throw corrupt(this.path, seq, `data position ${h.dataPos}, expected ${pos}`);
        pos += BigInt(dataLength(h));
        await visit(h);
        seq++;
      }
    }
    if (pos !== headDataPos) throw corrupt(this.path, seq, `data ends at ${pos}, the superblock says ${headDataPos}`);
    let recoveredTail = 0;
    let tailStop: string | undefined;
    const limit = this.outSeq + BigInt(this.layout.metaSlots);
    scan: while (seq < limit) {
      const n = Number(bigMin(BigInt(SCAN_SLOTS), limit - seq));
      const raw = await this.readHeaders(seq, n);
      for (let i = 0; i < n; i++) {
        let h: RecordHeader;
        try {
          h = decodeRecord(raw, i * RECORD_SIZE);
        } catch (e) {
          if (!isJshipError(e, 'RECORD_BAD_MAGIC')) tailStop = `seq ${seq}: ${(e as Error).message}`;
          break scan;
        }
        if (h.seq !== seq || h.dataPos !== pos) break scan; // a slot of an earlier lap: the end
        const len = dataLength(h);
        if (pos + BigInt(len) - this.outDataPos > BigInt(this.layout.dataSize)) break scan;
        try {
          verifyData(h, len > 0 ? await this.readData(pos, len) : Buffer.alloc(0));
        } catch (e) {
          tailStop = `seq ${seq}: ${(e as Error).message}`;
          break scan;
        }
        await visit(h);
        pos += BigInt(len);
        seq++;
        recoveredTail++;
      }
    }
    this.writtenSeq = this.allocSeq = seq;
    this.writtenPos = this.allocPos = pos;
    return { endSeq: seq, recoveredTail, tailStop };
  }

  /**
   * Frees records up to `upto` (inclusive): journal-out moves past them. The
   * superblock is made durable before the space can be reused.
   */
  async purge(upto: bigint, visit?: (h: RecordHeader) => void): Promise<void> {
    if (upto < this.outSeq) return;
    if (upto >= this.writtenSeq) throw new Error(`purge past the written end (${upto} >= ${this.writtenSeq})`);
    // Headers are read in slices and handed to `visit`, never all held at once.
    let last: RecordHeader | undefined;
    for (let s = this.outSeq; s <= upto; s += BigInt(SCAN_SLOTS)) {
      const n = Number(bigMin(BigInt(SCAN_SLOTS), upto - s + 1n));
      const raw = await this.readHeaders(s, n);
      for (let i = 0; i < n; i++) {
        last = this.#decodeAt(raw, i, s + BigInt(i));
        visit?.(last);
      }
    }
    const newOut = upto + 1n;
    const newOutPos = last ? last.dataPos + BigInt(dataLength(last)) : this.outDataPos;
    // The checkpoint is never behind journal-out (recovery reads from one to the other): the group purges after a checkpoint's flush.
    if (newOut > this.#durable.seq) throw new Error(`purge past the durable end (${upto} >= ${this.#durable.seq})`);
    await this.writeSuperblock({ outSeq: newOut, outDataPos: newOutPos }, true);
  }

  /**
   * Records before `seq` (data before `pos`) are durable: an fdatasync that
   * began after they were written has ended. The next superblock written,
   * whatever it is written for, takes them as its checkpoint.
   */
  noteDurable(seq: bigint, pos: bigint): void {
    if (seq > this.#durable.seq) this.#durable = { seq, pos };
  }

  /** fdatasync of the journal file. */
  async sync(): Promise<void> {
    await this.#h.datasync();
  }

  /**
   * Writes the next superblock generation into the copy that does not hold
   * the current one. With `durable`, fsyncs it too.
   */
  async writeSuperblock(fields: Partial<Omit<Superblock, 'generation' | 'groupId'>>, durable: boolean): Promise<void> {
    // Serialized: each write derives from the one before (generation, flags, pointers).
    const run = this.#sbChain.then(async () => {
      const head = { headSeq: this.#durable.seq, headDataPos: this.#durable.pos };
      const next: Superblock = { ...this.#sb, ...head, ...fields, generation: this.#sb.generation + 1n };
      this.noteDurable(next.headSeq, next.headDataPos);
      // One sector: written from this thread like a small batch (SYNC_WRITE_BYTES).
      writeFullySync(this.#h.fd, encodeSuperblock(next), Number(next.generation % 2n) * SUPERBLOCK_SLOT);
      if (durable) await this.#h.datasync();
      this.#sb = next;
      this.outSeq = next.outSeq;
      this.outDataPos = next.outDataPos;
    });
    this.#sbChain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#h.close();
  }
}

async function readSuperblocks(h: fsp.FileHandle, path: string): Promise<Superblock> {
  const buf = await readFully(h, 2 * SUPERBLOCK_SLOT, 0);
  const copies: Superblock[] = [];
  const errors: JshipError[] = [];
  for (let i = 0; i < 2; i++) {
    try {
      copies.push(decodeSuperblock(buf.subarray(i * SUPERBLOCK_SLOT, (i + 1) * SUPERBLOCK_SLOT), `journal ${path} superblock copy ${i + 1}`));
    } catch (e) {
      if (!(e instanceof JshipError)) throw e;
      errors.push(e);
    }
  }
  if (copies.length === 0) {
    const foreign = errors.every((e) => e.code === 'SUPERBLOCK_BAD_MAGIC' || e.code === 'SUPERBLOCK_TRUNCATED');
    if (foreign) {
      throw new JshipError('JOURNAL_NOT_JOURNAL', `${path} is not a jship journal`, {
        hint: 'the group config names a file that jship did not create; check the journal path, nothing was changed',
      });
    }
    throw new JshipError('JOURNAL_CORRUPT', `journal ${path}: both superblock copies are damaged (${errors.map((e) => e.message).join('; ')})`, {
      hint: 'the journal cannot be opened safely; export what the replica has, then re-create the group and take a new base',
    });
  }
  copies.sort((a, b) => (a.generation < b.generation ? 1 : a.generation > b.generation ? -1 : 0));
  const best = copies[0] as Superblock;
  if (copies.length === 2 && (copies[1] as Superblock).groupId !== best.groupId) {
    throw new JshipError('JOURNAL_CORRUPT', `journal ${path}: its superblock copies name different groups`, { hint: 'the file was overwritten; restore it' });
  }
  return best;
}

function corrupt(path: string, seq: bigint, why: string): JshipError {
  return new JshipError('JOURNAL_CORRUPT', `journal ${path}: record ${seq} is damaged (${why})`, {
    hint: 'records before it are intact; export them, then re-create the journal and take a new base',
    details: { path, seq },
  });
}

function bigMin(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/** Splits a list of buffers after `n` bytes. */
function splitBuffers(bufs: Uint8Array[], n: number): [Uint8Array[], Uint8Array[]] {
  const take: Uint8Array[] = [];
  let i = 0;
  let left = n;
  while (left > 0 && i < bufs.length) {
    const b = bufs[i] as Uint8Array;
    if (b.length <= left) {
      take.push(b);
      left -= b.length;
      i++;
    } else {
      take.push(b.subarray(0, left));
      return [take, [b.subarray(left), ...bufs.slice(i + 1)]];
    }
  }
  return [take, bufs.slice(i)];
}

function writevFullySync(fd: number, bufs: Uint8Array[], position: number): void {
  let pos = position;
  for (const b of bufs) {
    writeFullySync(fd, b, pos);
    pos += b.length;
  }
}

async function writevFully(h: fsp.FileHandle, bufs: Uint8Array[], position: number): Promise<void> {
  let rest = bufs;
  let pos = position;
  while (rest.length > 0) {
    const { bytesWritten } = await h.writev(rest.slice(0, 1024), pos);
    pos += bytesWritten;
    [, rest] = splitBuffers(rest, bytesWritten);
  }
}

/** Reads the newest valid superblock of a journal without opening it for writing (status of a group another process owns). */
export async function readJournalSuperblock(path: string): Promise<Superblock> {
  const h = await fsp.open(path, constants.O_RDONLY);
  try {
    return await readSuperblocks(h, path);
  } finally {
    await h.close();
  }
}
