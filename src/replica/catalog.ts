import Database from 'better-sqlite3';
import { JshipError } from '../core/errors.js';
import { crc32 } from '../core/crc32.js';
import { INDEX_ENTRY } from '../core/record-index.js';
import { checkPointDigest, type PointDigest } from '../core/volume-digest.js';
import { checkLineage, type Lineage } from '../core/epoch.js';

/** A tape as the catalogue knows it. Sequence numbers and timestamps are bigints. */
export interface TapeRow {
  serial: number;
  file: string;
  sha256: string;
  bytes: number;
  mediaSet: string;
  mediaIndex: number;
  mediaLast: boolean | null;
  prevSha256: string | null;
  keyId: string | null;
  /** `complete`: verified to its trailer. `partial`: damaged or truncated; only its verified segments count. */
  status: 'complete' | 'partial';
  problem: string | null;
  records: number;
  firstSeq: bigint | null;
  lastSeq: bigint | null;
  firstTs: bigint | null;
  lastTs: bigint | null;
  baseId: bigint | null;
  createdAt: string;
  importedAt: string;
}

/**
 * A tape as outputs name it: its chain (the tape chain, or the direct link's
 * chain of this secondary), its serial there and, after a promotion, the
 * epoch whose chain it is (each epoch numbers its chains from 1; left out
 * for epoch 1). The catalogue keys a tape by one number: its serial plus
 * 2^31 for each epoch before its own, negated for link tapes. Within a
 * chain, a larger magnitude is a later tape. That key never leaves the
 * replica.
 */
export interface TapeRef {
  chain: 'tapes' | 'link';
  serial: number;
  epoch?: number;
}

const EPOCH_STRIDE = 2 ** 31;

/** The catalogue key of tape `serial` of a chain of epoch `generation`. */
export function tapeKey(chain: 'tapes' | 'link', serial: number, generation = 1): number {
  const k = (generation - 1) * EPOCH_STRIDE + serial;
  return chain === 'link' ? -k : k;
}

export function tapeRef(key: number): TapeRef {
  const abs = Math.abs(key);
  const generation = Math.floor(abs / EPOCH_STRIDE) + 1;
  const serial = abs - (generation - 1) * EPOCH_STRIDE;
  return { chain: key < 0 ? 'link' : 'tapes', serial, ...(generation > 1 ? { epoch: generation } : {}) };
}

/** The epoch of the tape a key names. */
export function keyGeneration(key: number): number {
  return Math.floor(Math.abs(key) / EPOCH_STRIDE) + 1;
}

/** A tape's serial as people read it: `3`, `link 3` for the link's tape 3, `3 (epoch 2)` for a later epoch's. */
export function serialText(key: number): string {
  return tapeRefText(tapeRef(key));
}

/** A tape reference as people read it (see serialText). */
export function tapeRefText(r: TapeRef): string {
  return `${r.chain === 'link' ? 'link ' : ''}${r.serial}${r.epoch ? ` (epoch ${r.epoch})` : ''}`;
}

/** Catalogue keys in the order outputs list them: the tape chain's by epoch and serial, then the link's. */
export function byChain(a: number, b: number): number {
  return (a < 0) !== (b < 0) ? b - a : Math.abs(a) - Math.abs(b);
}

export interface SegmentRow {
  serial: number;
  idx: number;
  kind: 'update' | 'base';
  firstSeq: bigint;
  lastSeq: bigint;
  firstTs: bigint;
  lastTs: bigint;
  records: number;
  /** Where the segment's zstd frame sits in the tape file, for reading it alone. */
  frameOffset: number;
  frameLength: number;
  /** The segment's hash, as its tape's trailer lists it (XXH3-128 or SHA-256 by the tape's version; column `sha256`). */
  hash: string;
  baseId: bigint | null;
}

export interface MarkerRow {
  seq: bigint;
  ts: bigint;
  kind: string;
  name: string | null;
  baseId: bigint | null;
  /** base-started markers: full or resync. */
  scope: string | null;
  /** The marker's JSON payload. */
  payload: string;
  serial: number;
}

export const SCHEMA_VERSION = 1;

/** Meta key: the lineage (core/epoch.ts, JSON) of the newest epoch whose tapes the replica holds or that it was promoted to. */
export const EPOCHS = 'epochs';

/** Meta key: the group's volumes were created zero-filled then (ns), as its tapes' labels say. */
export const ZEROED_TS = 'zeroedTs';

/**
 * The base at seq 0 of a group whose volumes `init` created zero-filled: a
 * full base with no records (the volumes were all zeros), complete before the
 * first record. Its markers are not on any tape (serial 0): the labels say it.
 * Usable, like any base, only with every record from seq 1 on.
 */
function zeroBase(ts: bigint): MarkerRow[] {
  const common = { seq: 0n, ts, name: null, baseId: 0n, serial: 0 };
  return [
    { ...common, kind: 'base-started', scope: 'full', payload: JSON.stringify({ kind: 'base-started', scope: 'full', volumes: [], zeroed: true }) },
    { ...common, kind: 'base-complete', scope: null, payload: JSON.stringify({ kind: 'base-complete', baseId: '0', records: 0, bytes: 0 }) },
  ];
}

/** The columns of a segment's row a restore plans from (all but its record index, which has a CRC of its own), in the order of its row CRC. */
const SEGMENT_FIELDS = ['serial', 'idx', 'kind', 'first_seq', 'last_seq', 'first_ts', 'last_ts', 'records', 'frame_offset', 'frame_length', 'sha256', 'base_id'] as const;
const SEGMENT_COLUMNS = SEGMENT_FIELDS.join(', ');
/** A marker's columns, in the order of its row CRC. */
const MARKER_FIELDS = ['seq', 'ts', 'kind', 'name', 'base_id', 'scope', 'payload', 'serial'] as const;
const MARKER_COLUMNS = MARKER_FIELDS.join(', ');
/** Tables whose rows carry a CRC of their values (`row_crc`; NULL in rows catalogued before it was added). */
const CHECKED_TABLES = ['segments', 'markers'] as const;

/**
 * CRC-32 of a row's values: each as text (an integer reads back from SQLite
 * as a bigint, whatever it was written as) followed by U+001F, a NULL as
 * U+0000 U+001F, in UTF-8. SQLite does not check its pages; a restore plans
 * from these rows.
 */
function rowCrc(values: ReadonlyArray<unknown>): number {
  let s = '';
  for (const v of values) s += v === null || v === undefined ? '\u0000\u001f' : `${String(v)}\u001f`;
  return crc32(Buffer.from(s, 'utf8'));
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tapes (
  serial INTEGER PRIMARY KEY,
  file TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  media_set TEXT NOT NULL,
  media_index INTEGER NOT NULL,
  media_last INTEGER,
  prev_sha256 TEXT,
  key_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('complete', 'partial')),
  problem TEXT,
  records INTEGER NOT NULL,
  first_seq INTEGER, last_seq INTEGER, first_ts INTEGER, last_ts INTEGER,
  base_id INTEGER,
  created_at TEXT NOT NULL,
  imported_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
  serial INTEGER NOT NULL REFERENCES tapes(serial) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('update', 'base')),
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
  first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,
  records INTEGER NOT NULL,
  frame_offset INTEGER NOT NULL, frame_length INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  base_id INTEGER,
  record_index BLOB NOT NULL,
  row_crc INTEGER,
  PRIMARY KEY (serial, idx)
);
CREATE INDEX IF NOT EXISTS segments_seq ON segments (kind, first_seq);
CREATE INDEX IF NOT EXISTS segments_time ON segments (kind, last_ts);
CREATE TABLE IF NOT EXISTS markers (
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  name TEXT,
  base_id INTEGER,
  scope TEXT,
  payload TEXT NOT NULL,
  serial INTEGER NOT NULL REFERENCES tapes(serial) ON DELETE CASCADE,
  row_crc INTEGER
);
CREATE INDEX IF NOT EXISTS markers_name ON markers (name);
CREATE TABLE IF NOT EXISTS staged_index (
  stage TEXT NOT NULL,
  idx INTEGER NOT NULL,
  record_index BLOB NOT NULL,
  PRIMARY KEY (stage, idx)
);
`;

type Row = Record<string, unknown>;
const big = (v: unknown): bigint | null => (v === null || v === undefined ? null : BigInt(v as bigint | number));
const num = (v: unknown): number => Number(v as bigint | number);

/**
 * The replica's catalogue (SQLite, WAL): tapes, their segments with frame
 * offsets (so that a restore reads only the segments it needs), markers, and
 * the time index (segment time ranges). It can always be rebuilt from the
 * stored tapes (`jship catalog --rebuild`).
 */
export class Catalog {
  readonly path: string;
  readonly #db: Database.Database;

  /** With `readonly`, an existing catalogue is read as committed, and nothing can be written (Replica.view). */
  constructor(path: string, opts: { readonly?: boolean } = {}) {
    this.path = path;
    try {
      this.#db = new Database(path, opts.readonly ? { readonly: true, fileMustExist: true } : {});
      this.#db.defaultSafeIntegers(true);
      if (!opts.readonly) {
        this.#db.pragma('journal_mode = WAL');
        this.#db.pragma('synchronous = FULL');
        this.#db.pragma('foreign_keys = ON');
        this.#db.exec(SCHEMA);
        // A catalogue from before rows carried a CRC gets the column; its rows keep NULL (unchecked) until a rebuild.
        for (const t of CHECKED_TABLES) if (!this.#hasColumn(t, 'row_crc')) this.#db.exec(`ALTER TABLE ${t} ADD COLUMN row_crc INTEGER`);
      }
      for (const t of CHECKED_TABLES) if (this.#hasColumn(t, 'row_crc')) this.#crcColumn.add(t);
      const version = this.getMeta('schema');
      if (version === undefined && !opts.readonly) this.setMeta('schema', String(SCHEMA_VERSION));
      else if (version !== String(SCHEMA_VERSION)) throw new Error(`schema version ${version}, this jship uses ${SCHEMA_VERSION}`);
    } catch (e) {
      throw new JshipError('REPLICA_BAD', `catalogue ${path} cannot be opened: ${(e as Error).message}`, {
        hint: 'rebuild it from the stored tapes: jship catalog REPLICA_DIR --rebuild',
        cause: e,
      });
    }
  }

  #sync = true;
  /** Tables that have the row_crc column (a catalogue opened read-only may be one from before it). */
  readonly #crcColumn = new Set<string>();

  #hasColumn(table: string, column: string): boolean {
    return (this.#db.pragma(`table_info(${table})`) as Array<{ name: string }>).some((c) => c.name === column);
  }

  /** `row_crc` in a SELECT list, or NULL for a table without it. */
  #crc(table: (typeof CHECKED_TABLES)[number]): string {
    return this.#crcColumn.has(table) ? 'row_crc' : 'NULL AS row_crc';
  }

  /** The row, once its CRC matches its values (rows without one are taken as they are); REPLICA_BAD otherwise. */
  #checkRow(table: string, r: Row, fields: readonly string[], what: string): Row {
    if (r.row_crc !== null && r.row_crc !== undefined && rowCrc(fields.map((f) => r[f])) !== Number(r.row_crc)) {
      throw this.#damaged(`the catalogue's row of ${what} in ${table} is damaged (its CRC does not match)`);
    }
    return r;
  }

  /** A part of the catalogue that fails its CRC: the tapes are not affected, and a rebuild from them is the cure. */
  #damaged(what: string): JshipError {
    return new JshipError('REPLICA_BAD', `${this.path}: ${what}`, {
      hint: 'the catalogue is damaged (the stored tapes are not): jship catalog --rebuild REPLICA rebuilds it from them',
    });
  }

  #checkSegment(r: Row): Row {
    return this.#checkRow('segments', r, SEGMENT_FIELDS, `tape ${String(r.serial)} segment ${String(r.idx)}`);
  }

  #synchronous(on: boolean): void {
    if (this.#sync === on) return;
    this.#db.pragma(`synchronous = ${on ? 'FULL' : 'OFF'}`);
    this.#sync = on;
  }

  /** Each statement is prepared once per catalogue: a restore asks for a segment's index thousands of times. */
  readonly #statements = new Map<string, Database.Statement>();

  #sql(text: string): Database.Statement {
    let st = this.#statements.get(text);
    if (st === undefined) {
      st = this.#db.prepare(text);
      this.#statements.set(text, st);
    }
    return st;
  }

  close(): void {
    this.#statements.clear();
    if (this.#db.open) this.#db.close();
  }

  /** Closes it with everything in its one file (no write-ahead log beside it), synchronously written: ready to be moved. */
  closeAsOneFile(): void {
    this.#synchronous(true);
    this.#db.pragma('journal_mode = DELETE');
    this.close();
  }

  getMeta(key: string): string | undefined {
    const r = this.#sql('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined;
    return r ? String(r.value) : undefined;
  }

  setMeta(key: string, value: string): void {
    this.#synchronous(true);
    this.#sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** The primary's digest of the point at `seq` (a restore point, a base completion), when a tape brought it. */
  digest(seq: bigint): PointDigest | undefined {
    const v = this.getMeta(`digest:${seq}`);
    return v === undefined ? undefined : checkPointDigest(JSON.parse(v), `the catalogue's digest of seq ${seq}`);
  }

  setDigest(d: PointDigest): void {
    this.setMeta(`digest:${d.seq}`, JSON.stringify(d));
  }

  /** The lineage the replica follows (empty: epoch 1). */
  lineage(): Lineage {
    const v = this.getMeta(EPOCHS);
    if (v === undefined) return [];
    return checkLineage(JSON.parse(v), (why) => {
      throw new JshipError('REPLICA_BAD', `the catalogue's epochs ${why}`, { hint: 'rebuild it from the stored tapes: jship catalog REPLICA_DIR --rebuild' });
    });
  }

  setLineage(l: Lineage): void {
    this.setMeta(EPOCHS, JSON.stringify(l));
  }

  tape(serial: number): TapeRow | undefined {
    const r = this.#sql('SELECT * FROM tapes WHERE serial = ?').get(serial) as Row | undefined;
    return r ? toTape(r) : undefined;
  }

  tapes(): TapeRow[] {
    return (this.#sql('SELECT * FROM tapes ORDER BY serial').all() as Row[]).map(toTape);
  }

  segments(serial?: number): SegmentRow[] {
    const rows = serial === undefined
      ? this.#sql(`SELECT ${SEGMENT_COLUMNS}, ${this.#crc('segments')} FROM segments ORDER BY serial, idx`).all()
      : this.#sql(`SELECT ${SEGMENT_COLUMNS}, ${this.#crc('segments')} FROM segments WHERE serial = ? ORDER BY idx`).all(serial);
    return (rows as Row[]).map((r) => toSegment(this.#checkSegment(r)));
  }

  /**
   * The record index of one segment, checked: it is stored with a CRC-32 of
   * its entries after them (`stageIndex`), because it decides where every
   * byte of a restore goes and SQLite does not check its pages. An index
   * without one (catalogued before the CRC was added) is taken as it is.
   */
  recordIndex(serial: number, idx: number): Buffer {
    const r = this.#sql('SELECT record_index FROM segments WHERE serial = ? AND idx = ?').get(serial, idx) as Row | undefined;
    if (!r) return Buffer.alloc(0);
    const b = Buffer.from(r.record_index as Uint8Array);
    if (b.length % INDEX_ENTRY === 0) return b;
    const entries = b.subarray(0, b.length - 4);
    if (b.length % INDEX_ENTRY !== 4 || crc32(entries) !== b.readUInt32LE(entries.length)) {
      throw this.#damaged(`the record index of tape ${serial} segment ${idx} is damaged (${b.length % INDEX_ENTRY !== 4 ? `${b.length} bytes` : 'its CRC does not match'})`);
    }
    return entries;
  }

  markers(): MarkerRow[] {
    const rows = (this.#sql(`SELECT ${MARKER_COLUMNS}, ${this.#crc('markers')} FROM markers ORDER BY seq`).all() as Row[]).map((r) => this.#checkRow('markers', r, MARKER_FIELDS, `the marker at seq ${String(r.seq)}`)).map((r) => ({
      seq: BigInt(r.seq as bigint), ts: BigInt(r.ts as bigint), kind: String(r.kind), name: r.name === null ? null : String(r.name), baseId: big(r.base_id), scope: r.scope === null ? null : String(r.scope), payload: String(r.payload), serial: num(r.serial),
    }));
    const zeroed = this.getMeta(ZEROED_TS);
    return zeroed === undefined ? rows : [...zeroBase(BigInt(zeroed)), ...rows];
  }

  /**
   * Parks a segment's record index while its tape is still being read, so
   * that an import holds no index in memory; `putTape` with the same stage
   * takes them, `dropStaged` forgets them. Stored with a CRC-32 of the
   * entries after them (4 bytes, little-endian), which `recordIndex` checks.
   */
  stageIndex(stage: string, idx: number, index: Buffer): void {
    // Staged rows need no durability of their own (a crash drops them anyway):
    // no fsync per segment; putTape's transaction, synchronous again, makes them durable with the rest.
    this.#synchronous(false);
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32(index));
    this.#sql('INSERT OR REPLACE INTO staged_index (stage, idx, record_index) VALUES (?, ?, ?)').run(stage, idx, Buffer.concat([index, crc]));
  }

  /** Forgets staged indexes: one stage, or all (left by a killed import). */
  dropStaged(stage?: string): void {
    if (stage === undefined) this.#sql('DELETE FROM staged_index').run();
    else this.#sql('DELETE FROM staged_index WHERE stage = ?').run(stage);
  }

  /**
   * Replaces everything known about a tape serial with `tape`, its segments
   * and markers, in one transaction. Segment indexes come from `stage`.
   */
  putTape(tape: TapeRow, segments: SegmentRow[], markers: MarkerRow[], stage: string): void {
    this.#synchronous(true);
    const tx = this.#db.transaction(() => {
      this.#sql('DELETE FROM tapes WHERE serial = ?').run(tape.serial);
      this.#sql(`INSERT INTO tapes (serial, file, sha256, bytes, media_set, media_index, media_last, prev_sha256, key_id, status, problem, records,
        first_seq, last_seq, first_ts, last_ts, base_id, created_at, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
        tape.serial, tape.file, tape.sha256, tape.bytes, tape.mediaSet, tape.mediaIndex, tape.mediaLast === null ? null : tape.mediaLast ? 1 : 0,
        tape.prevSha256, tape.keyId, tape.status, tape.problem, tape.records, tape.firstSeq, tape.lastSeq, tape.firstTs, tape.lastTs, tape.baseId, tape.createdAt, tape.importedAt,
      );
      const seg = this.#sql(`INSERT INTO segments (${SEGMENT_COLUMNS}, row_crc, record_index)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT record_index FROM staged_index WHERE stage = ? AND idx = ?))`);
      for (const s of segments) {
        const values = [s.serial, s.idx, s.kind, s.firstSeq, s.lastSeq, s.firstTs, s.lastTs, s.records, s.frameOffset, s.frameLength, s.hash, s.baseId];
        seg.run(...values, rowCrc(values), stage, s.idx);
      }
      this.#sql('DELETE FROM staged_index WHERE stage = ?').run(stage);
      const mk = this.#sql(`INSERT OR REPLACE INTO markers (${MARKER_COLUMNS}, row_crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
      for (const m of markers) {
        const values = [m.seq, m.ts, m.kind, m.name, m.baseId, m.scope, m.payload, m.serial];
        mk.run(...values, rowCrc(values));
      }
    });
    tx();
  }

  /** Removes tapes' rows and sets `meta`, in one transaction (expire: the rows go with the record of why). */
  deleteTapes(serials: number[], meta: Record<string, string>): void {
    this.#synchronous(true);
    this.#db.transaction(() => {
      for (const s of serials) this.#sql('DELETE FROM tapes WHERE serial = ?').run(s);
      const set = this.#sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
      for (const [k, v] of Object.entries(meta)) set.run(k, v);
    })();
  }

  deleteMeta(key: string): void {
    this.#synchronous(true);
    this.#sql('DELETE FROM meta WHERE key = ?').run(key);
  }

  /** Verified update ranges, merged: what sequence numbers the replica holds. */
  coverage(): Array<{ from: bigint; to: bigint }> {
    const rows = this.#sql(`SELECT ${SEGMENT_COLUMNS}, ${this.#crc('segments')} FROM segments WHERE kind = 'update' ORDER BY first_seq`).all() as Row[];
    return mergedRanges(rows.map((r) => {
      this.#checkSegment(r);
      return { firstSeq: BigInt(r.first_seq as bigint), lastSeq: BigInt(r.last_seq as bigint) };
    }));
  }
}

/** Ranges of sequence numbers (sorted by their first), merged where they touch or overlap. */
export function mergedRanges(ranges: Iterable<{ firstSeq: bigint; lastSeq: bigint }>): Array<{ from: bigint; to: bigint }> {
  const out: Array<{ from: bigint; to: bigint }> = [];
  for (const { firstSeq: from, lastSeq: to } of ranges) {
    const last = out[out.length - 1];
    if (last && from <= last.to + 1n) {
      if (to > last.to) last.to = to;
    } else {
      out.push({ from, to });
    }
  }
  return out;
}

function toTape(r: Row): TapeRow {
  return {
    serial: num(r.serial),
    file: String(r.file),
    sha256: String(r.sha256),
    bytes: num(r.bytes),
    mediaSet: String(r.media_set),
    mediaIndex: num(r.media_index),
    mediaLast: r.media_last === null ? null : num(r.media_last) === 1,
    prevSha256: r.prev_sha256 === null ? null : String(r.prev_sha256),
    keyId: r.key_id === null ? null : String(r.key_id),
    status: r.status === 'complete' ? 'complete' : 'partial',
    problem: r.problem === null ? null : String(r.problem),
    records: num(r.records),
    firstSeq: big(r.first_seq),
    lastSeq: big(r.last_seq),
    firstTs: big(r.first_ts),
    lastTs: big(r.last_ts),
    baseId: big(r.base_id),
    createdAt: String(r.created_at),
    importedAt: String(r.imported_at),
  };
}

function toSegment(r: Row): SegmentRow {
  return {
    serial: num(r.serial),
    idx: num(r.idx),
    kind: r.kind === 'base' ? 'base' : 'update',
    firstSeq: BigInt(r.first_seq as bigint),
    lastSeq: BigInt(r.last_seq as bigint),
    firstTs: BigInt(r.first_ts as bigint),
    lastTs: BigInt(r.last_ts as bigint),
    records: num(r.records),
    frameOffset: num(r.frame_offset),
    frameLength: num(r.frame_length),
    hash: String(r.sha256),
    baseId: big(r.base_id),
  };
}
