import { TAPE_HASH_TITLE, TapeHash, tapeHashOf } from './tape-hash.js';
import { isJshipError, type ErrorCode } from '../core/errors.js';
import type { KeyRing } from './crypto.js';
import { labelGeneration, type TapeLabel, type TapeTrailer } from './label.js';
import { readTape } from './tape-reader.js';
import { findTrailer, readLabel } from './tape-file.js';
import { repairTape } from './repair.js';
import { asSource, type TapeSource } from './tape-source.js';
import type { FramePool } from './frame-pool.js';

export interface TapeVerification {
  path: string;
  ok: boolean;
  label: TapeLabel | null;
  trailer: TapeTrailer | null;
  /** The tape's hash: SHA-256, or BLAKE3 from format 5 (tape/tape-hash.ts; the key kept its name). */
  sha256: string | null;
  bytes: number;
  segments: number;
  records: number;
  /** Records were decrypted and checked (false for an encrypted tape verified without its key). */
  recordsChecked: boolean;
  firstSeq: bigint | null;
  lastSeq: bigint | null;
  error: { code: ErrorCode; message: string; hint: string | null; segmentsIntact: number; recordsIntact: number; lastGoodSeq: string | null } | null;
  /** Problems between this tape and the one before it in the list (same group, serial - 1). */
  chain: string[];
  /**
   * Its parity (export --parity): `intact`, or for a damaged tape whether
   * import rebuilds it (`repairable`) or not (`lost`: `lost` names what);
   * `unknown` for a damaged tape read from a stream or a store. Null: no parity.
   */
  parity: { percent: number; state: 'intact' | 'repairable' | 'lost' | 'unknown'; rebuilt: string[]; lost: string[] } | null;
}

/** Verifies tapes offline, with no replica; checks the chain between consecutive tapes given together. */
export async function verifyTapes(sources: Array<string | TapeSource>, opts: { keys?: KeyRing; pool?: FramePool } = {}): Promise<TapeVerification[]> {
  const out: TapeVerification[] = [];
  for (const src of sources) out.push(await verifyOne(asSource(src), opts));
  // Tapes given together are one group's (the first tape's): within it, each epoch's tape chain and each link secondary's chain (serials from 1 in each).
  const group = out.find((v) => v.label)?.label?.groupId;
  for (const v of out) {
    if (v.label && v.label.groupId !== group) v.chain.push(`it belongs to another group (${v.label.groupId}) than the first tape given (${group}): verify one group's tapes at a time`);
  }
  const chains = new Map<string, TapeVerification[]>();
  for (const v of out) {
    if (!v.label || v.label.groupId !== group) continue;
    const k = `${labelGeneration(v.label)}:${v.label.link?.secondary ?? ''}`;
    chains.set(k, [...(chains.get(k) ?? []), v]);
  }
  for (const chain of chains.values()) checkChain(chain);
  for (const v of out) if (v.chain.length > 0) v.ok = false;
  return out;
}

/** Checks consecutive tapes of one chain: serials, previous-tape hashes, sequence numbers. */
function checkChain(tapes: TapeVerification[]): void {
  const bySerial = [...tapes].sort((a, b) => (a.label as TapeLabel).serial - (b.label as TapeLabel).serial);
  for (let i = 1; i < bySerial.length; i++) {
    const prev = bySerial[i - 1] as TapeVerification;
    const cur = bySerial[i] as TapeVerification;
    const pl = prev.label as TapeLabel;
    const cl = cur.label as TapeLabel;
    if (cl.serial === pl.serial) {
      cur.chain.push(`serial ${cl.serial} appears twice (${prev.path}, ${cur.path})${prev.sha256 === cur.sha256 ? ': the same tape' : ': two different tapes'}`);
      continue;
    }
    if (cl.serial !== pl.serial + 1) {
      cur.chain.push(`tapes ${pl.serial + 1}..${cl.serial - 1} of the chain are missing between ${prev.path} and ${cur.path}`);
      continue;
    }
    if (cl.prevTapeSha256 !== prev.sha256) cur.chain.push(`its label names a previous tape with hash ${cl.prevTapeSha256 ?? 'none'}, but tape ${pl.serial} (${prev.path}) has ${TAPE_HASH_TITLE[tapeHashOf(pl.version)]} ${prev.sha256}`);
    if (prev.lastSeq !== null && cur.firstSeq !== null && cur.firstSeq !== prev.lastSeq + 1n) cur.chain.push(`its records start at ${cur.firstSeq}, tape ${pl.serial} ended at ${prev.lastSeq}`);
  }
}

async function verifyOne(src: TapeSource, opts: { keys?: KeyRing; pool?: FramePool }): Promise<TapeVerification> {
  const path = src.where;
  const v: TapeVerification = {
    path, ok: false, label: null, trailer: null, sha256: null, bytes: 0, segments: 0, records: 0, recordsChecked: true,
    firstSeq: null, lastSeq: null, error: null, chain: [], parity: null,
  };
  const hash = new TapeHash();
  try {
    await src.size();
    // Only the label decides how to read; a tape without one is reported by the full read below.
    const label = await readLabel(src).catch(() => null);
    const structureOnly = !!label?.encryption && !opts.keys;
    v.recordsChecked = !structureOnly;
    for await (const item of readTape(src.chunks(), {
      where: path, structureOnly,
      ...(opts.keys ? { keys: opts.keys } : {}),
      ...(opts.pool ? { pool: opts.pool } : {}),
      onBytes: (c) => {
        hash.add(c);
      },
    })) {
      if (item.type === 'label') hash.follow(item.label.version);
      hash.upTo(item.offset + item.length);
      v.bytes = hash.hashed;
      if (item.type === 'label') v.label = item.label;
      else if (item.type === 'trailer') v.trailer = item.trailer;
      else {
        v.segments++;
        v.records += item.header.count;
        if (item.info.kind === 'update') {
          v.firstSeq ??= item.header.firstSeq;
          v.lastSeq = item.header.lastSeq;
        }
      }
    }
    v.sha256 = hash.digest();
    v.ok = true;
    if (v.trailer?.parity) v.parity = { percent: v.trailer.parity.percent, state: 'intact', rebuilt: [], lost: [] };
  } catch (e) {
    if (!isJshipError(e)) throw e;
    v.error = {
      code: e.code, message: e.message, hint: e.hint ?? null,
      segmentsIntact: Number(e.details.segmentsVerified ?? v.segments),
      recordsIntact: Number(e.details.recordsVerified ?? v.records),
      lastGoodSeq: (e.details.lastGoodSeq as string | null | undefined) ?? (v.lastSeq?.toString() ?? null),
    };
    v.parity = await parityVerdict(src);
  }
  return v;
}

/** What a damaged tape's parity can do: found by a dry run of the repair (a local file only: a stream is read once, a store's object is not fetched again). */
async function parityVerdict(src: TapeSource): Promise<TapeVerification['parity']> {
  if (src.remote || (await src.size().catch(() => -1)) <= 0) {
    const t = await findTrailer(src).catch(() => undefined);
    return t?.parity ? { percent: t.parity.percent, state: 'unknown', rebuilt: [], lost: [] } : null;
  }
  const r = await repairTape(src).catch(() => undefined);
  if (!r || r.state === 'no-parity' || r.percent === null) return null;
  return { percent: r.percent, state: r.state === 'lost' ? 'lost' : r.state === 'repairable' ? 'repairable' : 'intact', rebuilt: r.rebuilt, lost: r.lost };
}
