import { JshipError } from '../core/errors.js';
import { checkParityRefs, type ParityFrameRef } from './parity.js';
import { checkPointDigest, type PointDigest } from '../core/volume-digest.js';
import { checkLineage, generationOf, type Lineage } from '../core/epoch.js';
import { SEGMENT_HASHES, isHashOf, type SegmentHashAlgorithm } from './segment-hash.js';

/** The first entry of every tape (`jship-label.json`): what the tape is, before any record is read. */
export interface TapeLabel {
  format: 'jship-tape';
  /**
   * The tape format's version: 2, segments bound to their tape; 3, the same
   * with encrypted segments compressed before they are encrypted (written
   * for encrypted tapes only); 4, segment hashes XXH3-128 instead of
   * SHA-256; 5, the tape's own hash BLAKE3 instead of SHA-256 (every tape
   * written now: tape-hash.ts). Readers read all four.
   */
  version: 2 | 3 | 4 | 5;
  groupId: string;
  volumes: Array<{ name: string; size: number }>;
  /** Position in the group's chain of tapes, from 1. */
  serial: number;
  /** The tapes written by one export (split by --media-size) share a media set id. */
  mediaSet: { id: string; index: number };
  /** The hash of the whole file of the chain's previous tape (serial - 1), by that tape's version (tape-hash.ts); null for serial 1. */
  prevTapeSha256: string | null;
  createdAt: string;
  host: string;
  encryption: { algorithm: 'aes-256-gcm'; keyId: string } | null;
  /**
   * Tapes of the tape chain of a group whose volumes `init` created
   * zero-filled: when that was (ns, decimal). The volumes were all zeros
   * before the group's first record — a base at seq 0 that needs no bytes.
   */
  zeroedTs?: string;
  /**
   * The promotions the tape's records descend from (core/epoch.ts): its
   * records are of the newest generation listed. Absent on tapes of
   * generation 1. Each generation has chains of its own (serials from 1).
   */
  epochs?: Lineage;
  /**
   * Present on tapes sent over the direct link: they form the chain of one
   * secondary (serials and previous-tape hashes of their own), apart from
   * the tape chain.
   */
  link?: { secondary: string };
}

export interface SegmentInfo {
  /** Tar entry name: segments/NNNNNNNN.jrs, numbered across the media set. */
  name: string;
  kind: 'update' | 'base';
  /**
   * Hash of the entry's content as stored (encrypted when the tape is), hex:
   * XXH3-128 on tapes of version 4, SHA-256 before (segment-hash.ts). In the
   * trailer its key names the algorithm: `xxh128` or `sha256`.
   */
  hash: string;
  records: number;
  /** Sequence numbers (base segments: positions). Decimal strings: they pass 2^53. */
  firstSeq: string;
  lastSeq: string;
  firstTs: string;
  lastTs: string;
  /** Bytes of the entry's content. */
  bytes: number;
}

export interface MarkerInfo {
  seq: string;
  ts: string;
  kind: string;
  name?: string;
  baseId?: string;
}

/** The last entry (`jship-trailer.json`): without it the tape is visibly truncated. */
export interface TapeTrailer {
  format: 'jship-tape-trailer';
  version: 1;
  serial: number;
  mediaSet: { id: string; index: number; last: boolean };
  records: number;
  /** Data bytes of the records (volume bytes of updates and base chunks, payload bytes of markers). */
  bytes: number;
  /** Range of the update records (journal records: updates, zeroes, trims, markers); null when none. */
  updates: { firstSeq: string; lastSeq: string; firstTs: string; lastTs: string } | null;
  /** The base records of this tape; null when none. */
  base: { baseId: string; scope: string; records: number; firstPos: string; lastPos: string } | null;
  markers: MarkerInfo[];
  segments: SegmentInfo[];
  /** Written with export --parity: the share asked for and where each parity frame lies (tapes without parity have none). */
  parity?: { percent: number; frames: ParityFrameRef[] };
  /** The digests of the points (restore points, base completions) whose markers this tape holds, as the primary computed them. */
  digests?: PointDigest[];
}

export const LABEL_NAME = 'jship-label.json';
/** The format version written now (readers take 2 to 5). */
export const TAPE_VERSION = 5;
export const TRAILER_NAME = 'jship-trailer.json';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const DEC = /^\d{1,20}$/;

function fail(where: string, field: string, why: string): never {
  throw new JshipError('TAPE_BAD_LABEL', `${where}: ${field} ${why}`, { hint: 'the label or trailer is not one jship writes: a foreign or damaged tape' });
}

function parse(text: Buffer, where: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text.toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  return fail(where, 'the entry', 'is not a JSON object');
}

export function encodeJson(v: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(v, null, 1)}\n`, 'utf8');
}

/** The format's bounds on what a label may say (docs/FORMAT.md): nothing larger is ever trusted. */
export const LABEL_LIMITS = {
  /** Volumes of a group. */
  volumes: 1024,
  /** Bytes of one volume: 2^50 (1 PiB). */
  volumeSize: 2 ** 50,
  /** Serials of a chain. */
  serial: 2 ** 31 - 1,
  /** Tapes of one media set. */
  mediaIndex: 1_000_000,
  /** Characters of free text (host, createdAt, key id, secondary name). */
  text: 256,
} as const;

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const text = (x: unknown): boolean => typeof x === 'string' && x.length <= LABEL_LIMITS.text;

export function decodeLabel(bytes: Buffer, where: string): TapeLabel {
  const v = parse(bytes, where);
  if (v.format !== 'jship-tape') fail(where, 'format', 'is not "jship-tape"');
  if (v.version !== 2 && v.version !== 3 && v.version !== 4 && v.version !== 5) {
    throw new JshipError('TAPE_BAD_LABEL', `${where}: tape format version ${String(v.version)} is not supported (this jship reads versions 2 to 5)`, {
      hint: typeof v.version === 'number' && v.version < 2 ? 'the tape was written by an earlier jship, whose segments are not bound to their tape: export it again with this release' : 'the tape was written by a newer jship: read it with that release',
    });
  }
  if (typeof v.groupId !== 'string' || !UUID.test(v.groupId)) fail(where, 'groupId', 'is not a UUID');
  if (!Array.isArray(v.volumes) || v.volumes.length === 0) fail(where, 'volumes', 'is empty');
  if (v.volumes.length > LABEL_LIMITS.volumes) fail(where, 'volumes', `lists ${v.volumes.length}, more than the format's ${LABEL_LIMITS.volumes}`);
  const names = new Set<string>();
  for (const vol of v.volumes as unknown[]) {
    const o = vol as Record<string, unknown>;
    if (typeof o?.name !== 'string' || !VOLUME_NAME.test(o.name) || names.has(o.name)) fail(where, 'volumes', 'has an entry without a valid, unique name');
    names.add(o.name);
    const size = o.size;
    if (!Number.isSafeInteger(size) || (size as number) < 0 || (size as number) > LABEL_LIMITS.volumeSize || (size as number) % 512 !== 0) {
      fail(where, 'volumes', `gives volume "${o.name}" a size (${String(size)}) that is not a multiple of 512 between 0 and 1 PiB`);
    }
  }
  if (!Number.isSafeInteger(v.serial) || (v.serial as number) < 1 || (v.serial as number) > LABEL_LIMITS.serial) fail(where, 'serial', 'is not a positive integer below 2^31');
  const ms = v.mediaSet as Record<string, unknown> | undefined;
  if (typeof ms?.id !== 'string' || !UUID.test(ms.id) || !Number.isSafeInteger(ms.index) || (ms.index as number) < 0 || (ms.index as number) > LABEL_LIMITS.mediaIndex) fail(where, 'mediaSet', 'is malformed');
  if (v.prevTapeSha256 !== null && (typeof v.prevTapeSha256 !== 'string' || !HEX64.test(v.prevTapeSha256))) fail(where, 'prevTapeSha256', 'is not a tape hash (64 hex digits)');
  if (v.epochs !== undefined) {
    checkLineage(v.epochs, (why) => fail(where, 'epochs', why));
    if ((v.epochs as Lineage).length === 0) fail(where, 'epochs', 'is empty (generation 1 leaves it out)');
  }
  if (v.serial === 1 && !v.link && v.prevTapeSha256 !== null) fail(where, 'prevTapeSha256', 'is set on the first tape of a chain');
  if ((v.serial as number) > 1 && v.prevTapeSha256 === null) fail(where, 'prevTapeSha256', `is missing on tape ${String(v.serial)} (only a chain's first tape has none)`);
  if (!text(v.createdAt) || !text(v.host)) fail(where, 'createdAt or host', 'is missing or too long');
  const enc = v.encryption as Record<string, unknown> | null;
  if (enc !== null && (enc?.algorithm !== 'aes-256-gcm' || !text(enc.keyId))) fail(where, 'encryption', 'names an unknown algorithm');
  if (v.zeroedTs !== undefined && (typeof v.zeroedTs !== 'string' || !/^[0-9]{1,19}$/.test(v.zeroedTs))) fail(where, 'zeroedTs', 'is not a decimal string of nanoseconds');
  const link = v.link as Record<string, unknown> | undefined;
  if (link !== undefined && (typeof link !== 'object' || link === null || !text(link.secondary) || link.secondary === '')) fail(where, 'link', 'is malformed');
  return v as unknown as TapeLabel;
}

export function decodeTrailer(text: Buffer, where: string): TapeTrailer {
  const v = parse(text, where);
  if (v.format !== 'jship-tape-trailer') fail(where, 'format', 'is not "jship-tape-trailer"');
  if (v.version !== 1) fail(where, 'version', 'is not supported');
  if (!Number.isSafeInteger(v.serial)) fail(where, 'serial', 'is missing');
  if (!Array.isArray(v.segments)) fail(where, 'segments', 'is missing');
  const segments = (v.segments as unknown[]).map((s) => {
    const o = s as Record<string, unknown>;
    // One hash, its key naming its algorithm (the reader checks that it is the label's).
    const keys = (Object.keys(SEGMENT_HASHES) as SegmentHashAlgorithm[]).filter((a) => o?.[a] !== undefined);
    const [alg] = keys;
    const hash = alg === undefined ? undefined : o[alg];
    if (typeof o?.name !== 'string' || keys.length !== 1 || !isHashOf(alg as SegmentHashAlgorithm, hash) || !DEC.test(String(o.firstSeq)) || !DEC.test(String(o.lastSeq))) {
      fail(where, 'segments', 'has a malformed entry');
    }
    const { [alg as SegmentHashAlgorithm]: _hash, ...rest } = o;
    return { ...rest, hash } as unknown as SegmentInfo;
  });
  if (!Array.isArray(v.markers)) fail(where, 'markers', 'is missing');
  if (!Number.isSafeInteger(v.records)) fail(where, 'records', 'is missing');
  if (v.parity !== undefined) {
    const p = v.parity as Record<string, unknown>;
    if (typeof p !== 'object' || p === null || typeof p.percent !== 'number' || !(p.percent > 0 && p.percent <= 100)) fail(where, 'parity', 'is malformed');
    checkParityRefs(p.frames, `${where} parity`);
  }
  if (v.digests !== undefined) {
    if (!Array.isArray(v.digests) || v.digests.length > (v.markers as unknown[]).length) fail(where, 'digests', 'is not a list of at most one digest a marker');
    for (const d of v.digests as unknown[]) checkPointDigest(d, `${where} digests`);
  }
  return { ...v, segments } as unknown as TapeTrailer;
}

/** The trailer's bytes: each segment's hash under the key of its algorithm (written now: `xxh128`). */
export function encodeTrailer(t: TapeTrailer, algorithm: SegmentHashAlgorithm = 'xxh128'): Buffer {
  return encodeJson({ ...t, segments: t.segments.map(({ name, kind, hash, ...rest }) => ({ name, kind, [algorithm]: hash, ...rest })) });
}

/** The generation of a tape's records (1 when its label lists no promotion). */
export function labelGeneration(label: Pick<TapeLabel, 'epochs'>): number {
  return generationOf(label.epochs ?? []);
}

/**
 * What a tape means for its consumer's bases: `fullBase`, it carries a whole
 * full base; `healed`, a whole base (full or resync) completing after any
 * suspension in it; `suspended`, a suspension it does not heal.
 */
export function trailerEffects(t: TapeTrailer): { fullBase: boolean; healed: boolean; suspended: boolean } {
  const complete = t.base ? t.markers.find((m) => m.kind === 'base-complete' && m.baseId === t.base?.baseId) : undefined;
  const lastSuspension = t.markers.filter((m) => m.kind === 'suspended').map((m) => BigInt(m.seq)).pop();
  const healed = complete !== undefined && (lastSuspension === undefined || BigInt(complete.seq) > lastSuspension);
  return { fullBase: complete !== undefined && t.base?.scope === 'full', healed, suspended: lastSuspension !== undefined && !healed };
}
