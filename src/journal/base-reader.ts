import { JshipError } from '../core/errors.js';
import type { MarkerPayload } from '../core/marker.js';
import { FLAG_BASE_ZERO, RecordType, dataCrc, type RecordHeader } from '../core/record.js';
import type { Volume } from '../volume/volume.js';
import type { DirtyBitmap } from './dirty-bitmap.js';
import type { JournalRecord } from './journal-volume.js';
import type { RangeOrder } from './range-order.js';

/**
 * `full`: every chunk of the volumes. `resync`: the chunks of the dirty
 * bitmap only, or the chunks a caller lists (an old primary being demoted:
 * its own divergent chunks and those written in this epoch).
 */
export type BaseScope = 'full' | 'resync';

/** What a base run needs of its group (passed in, so that the reader owns no group state). */
export interface BaseHooks {
  volumes: readonly Volume[];
  bitmap(): DirtyBitmap | undefined;
  order: RangeOrder;
  /** The sequence number of the last record given out. */
  position(): bigint;
  now(): bigint;
  track<T>(p: Promise<T>): Promise<T>;
  check(): void;
  mark(p: MarkerPayload): Promise<{ seq: bigint; timestamp: bigint }>;
  finished(run: BaseRun, ok: boolean): Promise<void>;
}

const ZERO = Buffer.alloc(4 * 1024 * 1024);
const READ_AHEAD = 2;

/**
 * One base journal being taken (patent §0154-0158; DESIGN invariant 4). Each
 * chunk is read in the group's write order: the read waits for every
 * earlier write to the chunk to reach the PVOL and later writes wait for the
 * read, so the chunk is exactly the volume as of its *position* (the last
 * sequence number given out when the read was ordered). Base records take no
 * sequence numbers; they sort after the record named by their position.
 */
export class BaseRun {
  readonly baseId: bigint;
  readonly scope: BaseScope;
  records = 0;
  bytes = 0;
  readonly #hooks: BaseHooks;
  readonly #volumes: number[];

  /** Indexes of the volumes this base reads. */
  get volumes(): readonly number[] {
    return this.#volumes;
  }
  readonly #chunkSize: number;
  readonly #cleared: Array<[number, number]> = [];
  #exhausted = false;
  #done = false;
  /** A full base read again after rewind(): the chunks before this one are on tapes already. */
  #skip = 0;
  /** The chunks listed by the caller (by volume index), instead of the dirty bitmap's. */
  readonly listed: ReadonlyArray<readonly number[]> | undefined;

  constructor(hooks: BaseHooks, baseId: bigint, scope: BaseScope, volumes: number[], chunkSize: number, listed?: ReadonlyArray<readonly number[]>) {
    this.#hooks = hooks;
    this.baseId = baseId;
    this.scope = scope;
    this.#volumes = volumes;
    this.#chunkSize = chunkSize;
    this.listed = listed;
  }

  /** The chunks to read, in volume and offset order (a full base: from the `skip`-th on). */
  *#chunks(skip = 0): Generator<[number, number]> {
    let i = 0;
    for (const v of this.#volumes) {
      const vol = this.#hooks.volumes[v] as Volume;
      const n = Math.ceil(vol.size / this.#chunkSize);
      const listed = this.listed?.[v];
      if (this.listed) {
        const chunks = (listed ?? []).filter((c) => c < n);
        for (const c of chunks) if (i++ >= skip) yield [v, c];
      } else if (this.scope === 'resync') {
        const bitmap = this.#hooks.bitmap();
        const chunks = bitmap && bitmap.chunkSize === this.#chunkSize ? [...bitmap.dirtyChunks(v)] : [];
        for (const c of chunks) yield [v, c];
      } else if (i + n <= skip) {
        i += n;
      } else {
        for (let c = Math.max(0, skip - i); c < n; c++) yield [v, c];
        i += n;
      }
    }
  }

  #length(v: number, chunk: number): number {
    return Math.min(this.#chunkSize, (this.#hooks.volumes[v] as Volume).size - chunk * this.#chunkSize);
  }

  /**
   * Takes the run back to its `kept`-th record: the next read() reads the
   * chunks from there again (a tape that held them was lost at the end of a
   * medium; the tapes before it hold the first `kept`). Each chunk read
   * again is the volume as of its new position, as any chunk of a base.
   */
  rewind(kept: number): void {
    if (this.#done || kept > this.records) throw new JshipError('USAGE', `base ${this.baseId}: cannot rewind to record ${kept} of ${this.records}`);
    if (this.scope === 'resync' && !this.listed) {
      // The chunks after `kept` were cleared when read: dirty again, so that they are read again.
      const bitmap = this.#hooks.bitmap();
      for (const [v, c] of this.#cleared.splice(kept)) bitmap?.set(v, c, true);
      this.bytes = this.#cleared.reduce((n, [v, c]) => n + this.#length(v, c), 0);
    } else {
      let bytes = 0;
      let i = 0;
      for (const [v, c] of this.#chunks()) {
        if (i++ >= kept) break;
        bytes += this.#length(v, c);
      }
      this.bytes = bytes;
    }
    this.records = kept;
    this.#skip = this.scope === 'resync' && !this.listed ? 0 : kept;
    this.#exhausted = false;
  }

  /** The base records, chunk by chunk, read while writes go on. */
  async *read(): AsyncGenerator<JournalRecord> {
    if (this.#done) throw new JshipError('USAGE', `base ${this.baseId} is finished`);
    const queue: Array<Promise<JournalRecord>> = [];
    const it = this.#chunks(this.#skip);
    const fill = (): void => {
      while (queue.length < READ_AHEAD) {
        const next = it.next();
        if (next.done) return;
        const [v, c] = next.value;
        const p = this.#readChunk(v, c);
        p.catch(() => undefined);
        queue.push(p);
      }
    };
    fill();
    while (queue.length > 0) {
      const rec = await (queue.shift() as Promise<JournalRecord>);
      fill();
      this.records++;
      this.bytes += rec.header.length;
      yield rec;
    }
    this.#exhausted = true;
  }

  #readChunk(v: number, chunk: number): Promise<JournalRecord> {
    this.#hooks.check();
    const vol = this.#hooks.volumes[v] as Volume;
    const offset = chunk * this.#chunkSize;
    const length = Math.min(this.#chunkSize, vol.size - offset);
    // Synchronous: the order slot, the position and the bitmap bit are taken together.
    const op = this.#hooks.order.register(v, offset, length);
    const position = this.#hooks.position();
    const bitmap = this.#hooks.bitmap();
    if (this.scope === 'resync' && bitmap && !this.listed) {
      bitmap.set(v, chunk, false);
      this.#cleared.push([v, chunk]);
    }
    return this.#hooks.track((async () => {
      try {
        await op.ready;
        const data = await vol.read(offset, length);
        const zero = data.length <= ZERO.length && data.equals(ZERO.subarray(0, data.length));
        const header: RecordHeader = {
          type: RecordType.Base,
          flags: zero ? FLAG_BASE_ZERO : 0,
          volume: v,
          seq: position,
          timestamp: this.#hooks.now(),
          offset,
          length,
          dataPos: 0n,
          aux: this.baseId,
          dataCrc: zero ? 0 : dataCrc(data),
        };
        return { header, data: zero ? Buffer.alloc(0) : data };
      } finally {
        op.finish();
      }
    })());
  }

  /** Journals "base complete" once every chunk was read (and stored by the caller). */
  async complete(): Promise<{ seq: bigint; timestamp: bigint }> {
    if (!this.#exhausted || this.#done) {
      throw new JshipError('USAGE', `base ${this.baseId}: complete() before all chunks were read`, { hint: 'read every record of the base first' });
    }
    this.#done = true;
    const r = await this.#hooks.mark({ kind: 'base-complete', baseId: String(this.baseId), records: this.records, bytes: this.bytes });
    await this.#hooks.finished(this, true);
    return r;
  }

  /** Journals "base interrupted"; the dirty chunks it had taken stay dirty. */
  async abort(reason: string): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    const bitmap = this.#hooks.bitmap();
    if (bitmap) for (const [v, c] of this.#cleared) bitmap.set(v, c, true);
    try {
      await this.#hooks.mark({ kind: 'base-interrupted', baseId: String(this.baseId), reason });
    } finally {
      await this.#hooks.finished(this, false);
    }
  }
}
