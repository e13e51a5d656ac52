import { JshipError } from './errors.js';
import { checkVolumeName } from './volume-spec.js';
import { checkLineage, type Lineage } from './epoch.js';

export type JournalFullPolicy = 'block' | 'suspend';

/** group.json: what `jship init` decided, read by every later command. */
export interface GroupConfig {
  format: 1;
  groupId: string;
  createdAt: string;
  /** The volumes of the consistency group, in index order (a record's volume field indexes this list). */
  volumes: Array<{ name: string; extents: Array<{ path: string; size: number }> }>;
  journal: { path: string; size: number };
  policy: {
    journalFull: JournalFullPolicy;
    /** `block`: how long a write may wait for journal space before it fails. */
    blockTimeoutMs: number;
    /** Usage (of the fuller ring) from which status says "nearly-full". */
    nearlyFullPercent: number;
  };
  /** Chunk of the dirty bitmap (suspend policy) and of base reads. */
  chunkSize: number;
  /**
   * Set when `init` created every volume file itself, zero-filled (ns since
   * the epoch, a decimal string): the group's state before its first record
   * is known — all zeros — and every tape says so, so that a replica can
   * restore any point from the first write on without a base (issue 19.3).
   */
  zeroedTs?: string;
  /**
   * The promotions this group's records descend from (core/epoch.ts), set
   * by `jship promote`: the group is the primary of the newest generation.
   * Absent: generation 1, never promoted.
   */
  epochs?: Lineage;
}

export const DEFAULT_POLICY: GroupConfig['policy'] = { journalFull: 'block', blockTimeoutMs: 30_000, nearlyFullPercent: 80 };
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** Validates a parsed group.json; every problem names the field. */
export function checkGroupConfig(v: unknown, where: string): GroupConfig {
  const bad = (field: string, why: string): never => {
    throw new JshipError('GROUP_BAD_CONFIG', `${where}: ${field} ${why}`, {
      hint: 'group.json is written by `jship init`; restore it from a backup or fix the field by hand',
    });
  };
  if (typeof v !== 'object' || v === null) return bad('the file', 'is not a JSON object');
  const c = v as Record<string, unknown>;
  if (c.format !== 1) bad('format', `is ${JSON.stringify(c.format)}, this jship reads format 1`);
  if (typeof c.groupId !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(c.groupId)) bad('groupId', 'is not a UUID');
  if (typeof c.createdAt !== 'string') bad('createdAt', 'is missing');
  if (!Array.isArray(c.volumes) || c.volumes.length === 0) return bad('volumes', 'must list at least one volume');
  if (c.volumes.length > 500) bad('volumes', 'has more than 500 entries');
  const names = new Set<string>();
  c.volumes.forEach((vol: unknown, i: number) => {
    const o = vol as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || typeof o.name !== 'string') return bad(`volumes[${i}]`, 'has no name');
    try {
      checkVolumeName(o.name);
    } catch (e) {
      bad(`volumes[${i}].name`, (e as Error).message);
    }
    if (names.has(o.name)) bad(`volumes[${i}].name`, `"${o.name}" is used twice`);
    names.add(o.name);
    if (!Array.isArray(o.extents) || o.extents.length === 0) return bad(`volumes[${i}].extents`, 'must list at least one file');
    o.extents.forEach((e: unknown, j: number) => {
      const x = e as Record<string, unknown> | null;
      if (typeof x !== 'object' || x === null || typeof x.path !== 'string' || !x.path.startsWith('/')) bad(`volumes[${i}].extents[${j}].path`, 'must be an absolute path');
      if (!Number.isSafeInteger(x?.size) || (x?.size as number) <= 0) bad(`volumes[${i}].extents[${j}].size`, 'must be a positive integer');
    });
    return undefined;
  });
  const j = c.journal as Record<string, unknown> | undefined;
  if (typeof j !== 'object' || j === null || typeof j.path !== 'string' || !j.path.startsWith('/')) bad('journal.path', 'must be an absolute path');
  if (!Number.isSafeInteger(j?.size)) bad('journal.size', 'must be an integer');
  const p = c.policy as Record<string, unknown> | undefined;
  if (typeof p !== 'object' || p === null) return bad('policy', 'is missing');
  if (p.journalFull !== 'block' && p.journalFull !== 'suspend') bad('policy.journalFull', 'must be "block" or "suspend"');
  if (!Number.isSafeInteger(p.blockTimeoutMs) || (p.blockTimeoutMs as number) < 0) bad('policy.blockTimeoutMs', 'must be a non-negative integer');
  if (typeof p.nearlyFullPercent !== 'number' || p.nearlyFullPercent <= 0 || p.nearlyFullPercent > 100) bad('policy.nearlyFullPercent', 'must be in (0, 100]');
  if (!Number.isSafeInteger(c.chunkSize) || (c.chunkSize as number) < 4096 || ((c.chunkSize as number) & ((c.chunkSize as number) - 1)) !== 0) {
    bad('chunkSize', 'must be a power of two of at least 4096');
  }
  if (c.zeroedTs !== undefined && (typeof c.zeroedTs !== 'string' || !/^[0-9]{1,19}$/.test(c.zeroedTs))) bad('zeroedTs', 'must be a decimal string of nanoseconds');
  if (c.epochs !== undefined) checkLineage(c.epochs, (why) => bad('epochs', why));
  return v as GroupConfig;
}
