import { JshipError } from '../core/errors.js';

/**
 * The carry manifest, `jship-manifest.json` beside the tapes on a medium:
 * which tapes the medium should hold (serial, file name, size, hash,
 * what they hold), rewritten by every export to that directory. The site
 * that receives the medium compares what arrived with it (`import
 * --manifest`): a tape missing or different is named before anyone relies
 * on the medium. Sequence numbers are decimal strings (64-bit).
 */
export interface CarryManifest {
  format: 1;
  groupId: string;
  updatedAt: string;
  tapes: ManifestTape[];
}

export interface ManifestTape {
  serial: number;
  file: string;
  bytes: number;
  sha256: string;
  updates: { firstSeq: string; lastSeq: string } | null;
  baseId: string | null;
}

export const MANIFEST_NAME = 'jship-manifest.json';

/** This medium's manifest with `added` in it (replacing any entry of the same serial), keeping only entries whose files are still there. */
export function mergeManifest(old: CarryManifest | undefined, groupId: string, added: ManifestTape[], present: (file: string) => boolean, now: Date): CarryManifest {
  const kept = old && old.groupId === groupId ? old.tapes.filter((t) => present(t.file) && !added.some((a) => a.serial === t.serial)) : [];
  return { format: 1, groupId, updatedAt: now.toISOString(), tapes: [...kept, ...added].sort((a, b) => a.serial - b.serial) };
}

const bad = (where: string, what: string): never => {
  throw new JshipError('USAGE', `${where} is not a jship carry manifest: ${what}`, { hint: `give the ${MANIFEST_NAME} that an export wrote beside the tapes` });
};

/** Parses and checks a manifest: every field typed and bounded. */
export function decodeManifest(text: string, where: string): CarryManifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return bad(where, `not JSON (${(e as Error).message})`);
  }
  const m = v as Partial<CarryManifest>;
  if (typeof m !== 'object' || m === null || m.format !== 1) return bad(where, 'format is not 1');
  if (typeof m.groupId !== 'string' || !/^[0-9a-f-]{36}$/.test(m.groupId)) return bad(where, 'groupId is not a group id');
  if (typeof m.updatedAt !== 'string' || Number.isNaN(Date.parse(m.updatedAt))) return bad(where, 'updatedAt is not a time');
  if (!Array.isArray(m.tapes) || m.tapes.length > 100_000) return bad(where, 'tapes is not a list');
  const seq = (x: unknown): boolean => typeof x === 'string' && /^\d{1,20}$/.test(x);
  for (const [i, t] of (m.tapes as Partial<ManifestTape>[]).entries()) {
    const at = `tape ${i + 1}`;
    if (typeof t !== 'object' || t === null) return bad(where, `${at} is not an object`);
    if (!Number.isSafeInteger(t.serial) || (t.serial as number) < 1 || (t.serial as number) >= 2 ** 31) return bad(where, `${at}: serial`);
    if (typeof t.file !== 'string' || !/^jship-[0-9a-z-]{1,80}\.tar\.zst$/.test(t.file)) return bad(where, `${at}: file`);
    if (!Number.isSafeInteger(t.bytes) || (t.bytes as number) < 0) return bad(where, `${at}: bytes`);
    if (typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256)) return bad(where, `${at}: sha256`);
    if (t.updates !== null && (typeof t.updates !== 'object' || !seq(t.updates?.firstSeq) || !seq(t.updates?.lastSeq))) return bad(where, `${at}: updates`);
    if (t.baseId !== null && !seq(t.baseId)) return bad(where, `${at}: baseId`);
  }
  return m as CarryManifest;
}

/** What arrived against what the manifest lists: per serial of the manifest, and the tapes it does not list. */
export interface ManifestCheck {
  ok: boolean;
  arrived: number[];
  missing: number[];
  differs: number[];
  unlisted: number[];
}

export function checkManifest(m: CarryManifest, got: Array<{ serial: number; sha256: string | null }>): ManifestCheck {
  const arrived: number[] = [];
  const missing: number[] = [];
  const differs: number[] = [];
  for (const t of m.tapes) {
    const same = got.filter((g) => g.serial === t.serial);
    if (same.length === 0) missing.push(t.serial);
    else if (same.some((g) => g.sha256 === t.sha256)) arrived.push(t.serial);
    else differs.push(t.serial);
  }
  const unlisted = [...new Set(got.filter((g) => !m.tapes.some((t) => t.serial === g.serial)).map((g) => g.serial))].sort((a, b) => a - b);
  return { ok: missing.length === 0 && differs.length === 0, arrived, missing, differs, unlisted };
}
