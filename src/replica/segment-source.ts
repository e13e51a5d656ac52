import { promises as fsp } from 'node:fs';
import type { FramePool } from '../tape/frame-pool.js';
import { JshipError } from '../core/errors.js';
import { frameSizeProblem, scanFrame } from '../core/zstd-frames.js';
import { KeyRing, missingKey } from '../tape/crypto.js';
import { SEGMENT_HEADER_SIZE, decodeSegmentHeader, openSegment } from '../tape/segment.js';
import { frameEntries } from '../tape/tar-entry.js';
import type { SegmentRow } from './catalog.js';
import type { Replica } from './replica.js';

/**
 * Reads single segments out of the stored tapes by their frame offsets:
 * one frame read, decompressed (zstd checks its content checksum), its
 * segment header checked against the catalogue, and decrypted. A small cache
 * serves records that come from the same segment. The SHA-256 was checked at
 * import; the store is the replica's own.
 */
export class SegmentSource {
  readonly #replica: Replica;
  readonly #keys: KeyRing | undefined;
  readonly #files = new Map<number, { path: string; keyId: string | null; mediaSet: string }>();
  readonly #cache = new Map<string, Buffer>();
  /** Segments being read now: concurrent readers of one segment share its decompression. */
  readonly #loading = new Map<string, Promise<Buffer>>();
  readonly #cacheSize: number;
  /** Tapes opened once and read through their handles (a mount, which outlives its hold on the replica). */
  readonly #held = new Map<number, fsp.FileHandle>();
  read = 0;

  readonly #pool: FramePool | undefined;

  constructor(replica: Replica, keys: KeyRing | undefined, opts: { cacheSize?: number; pool?: FramePool } = {}) {
    this.#pool = opts.pool;
    this.#replica = replica;
    this.#keys = keys;
    this.#cacheSize = opts.cacheSize ?? 4;
    for (const t of replica.catalog.tapes()) this.#files.set(t.serial, { path: replica.tapePath(t.file), keyId: t.keyId, mediaSet: t.mediaSet });
  }

  /** Refuses up front when a tape the restore needs is encrypted and no (or another) key was given. */
  checkKeys(serials: Iterable<number>): void {
    for (const s of serials) {
      const f = this.#files.get(s);
      if (f?.keyId && !this.#keys?.has(f.keyId)) throw missingKey(f.keyId, `tape ${s}`, this.#keys);
    }
  }

  /**
   * Opens these tapes now and reads them through the handles from then on:
   * what they hold stays readable as it was even when an import replaces a
   * tape file (renamed over) or it is removed.
   */
  async hold(serials: Iterable<number>): Promise<void> {
    for (const s of serials) {
      const f = this.#files.get(s);
      if (!f || this.#held.has(s)) continue;
      this.#held.set(s, await fsp.open(f.path, 'r'));
    }
  }

  async release(): Promise<void> {
    for (const h of this.#held.values()) await h.close();
    this.#held.clear();
  }

  /** The decrypted records payload of a segment. */
  payload(seg: SegmentRow): Promise<Buffer> {
    const k = `${seg.serial}:${seg.idx}`;
    const hit = this.#cache.get(k);
    if (hit) {
      this.#cache.delete(k);
      this.#cache.set(k, hit);
      return Promise.resolve(hit);
    }
    let p = this.#loading.get(k);
    if (!p) {
      p = this.#load(seg, k).finally(() => this.#loading.delete(k));
      this.#loading.set(k, p);
    }
    return p;
  }

  async #load(seg: SegmentRow, k: string): Promise<Buffer> {
    const f = this.#files.get(seg.serial);
    if (!f) throw new JshipError('REPLICA_BAD', `tape ${seg.serial} is catalogued but not stored`, { hint: 'jship catalog --rebuild' });
    const held = this.#held.get(seg.serial);
    const h = held ?? await fsp.open(f.path, 'r');
    const frame = Buffer.alloc(seg.frameLength);
    try {
      const { bytesRead } = await h.read(frame, 0, seg.frameLength, seg.frameOffset);
      if (bytesRead !== seg.frameLength) throw new JshipError('TAPE_DAMAGED', `${f.path} segment ${seg.idx} is cut short (${bytesRead} of ${seg.frameLength} bytes)`, { hint: 'the stored tape changed since it was imported: import a good copy again' });
    } finally {
      if (!held) await h.close();
    }
    const where = `${f.path} segment ${seg.idx}`;
    let content: Buffer;
    try {
      const s = scanFrame(frame, 0);
      if (s.kind !== 'frame' || s.length !== frame.length) throw new Error('not one whole zstd frame at the catalogued offset');
      const tooBig = frameSizeProblem(s);
      if (tooBig) throw new Error(tooBig);
      // Not hashed: nothing here compares it (the segment was checked whole when imported; zstd checks the frame's content checksum as it decompresses).
      const entries = this.#pool ? (await this.#pool.unframe(frame, { hash: false })).entries : await frameEntries(frame, where);
      content = entries[0]?.content ?? Buffer.alloc(0);
    } catch (e) {
      throw new JshipError('TAPE_DAMAGED', `${where} cannot be read: ${(e as Error).message}`, { hint: 'the stored tape changed since it was imported: import a good copy again', cause: e });
    }
    const sh = decodeSegmentHeader(content, where);
    if (sh.firstSeq !== seg.firstSeq || sh.lastSeq !== seg.lastSeq || sh.count !== seg.records || sh.groupId !== this.#replica.config.groupId || sh.mediaSetId !== f.mediaSet) {
      throw new JshipError('TAPE_DAMAGED', `${where}: the segment differs from the catalogue`, { hint: 'the stored tape changed since it was imported: rebuild the catalogue (jship catalog --rebuild) or import a good copy' });
    }
    let payload = content.subarray(SEGMENT_HEADER_SIZE);
    if (sh.encrypted) {
      if (!f.keyId) throw new JshipError('TAPE_DAMAGED', `${where}: an encrypted segment in a tape catalogued as plaintext`, { hint: 'the stored tape changed since it was imported: rebuild the catalogue (jship catalog --rebuild) or import a good copy' });
      payload = openSegment((this.#keys ?? new KeyRing([])).need(f.keyId, where), content, sh, where);
    }
    this.read++;
    this.#cache.set(k, payload);
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value as string);
    return payload;
  }
}
