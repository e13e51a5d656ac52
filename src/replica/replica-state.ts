import { isAbsolute, join } from 'node:path';
import { isRestoreTemp } from './targets.js';
import { JshipError } from '../core/errors.js';
import { readJsonFile, writeFileAtomic } from '../io/files.js';
import type { SvolFile } from './svol-files.js';

/** REPLICA_DIR/state.json: the secondary pointers of the SVOLs (§0078-0083) and restores in progress. */
export interface ReplicaState {
  format: 1;
  /** `files`: each SVOL file as the restore that brought them to `restoredSeq` left it (svol-files.ts); absent in states written before. */
  svol: { restoredSeq: string; restoredTs: string | null; inProgress: { seq: string; startedAt: string } | null; files?: Record<string, SvolFile> };
  devices: Record<string, { inProgress: { seq: string; startedAt: string } | null; restoredSeq: string | null }>;
  /**
   * Restored files (complete and durable under their temporary names) being
   * renamed into place together: a restore that finds this rolls the renames
   * forward before anything else.
   */
  renaming?: { seq: string; files: Array<{ tmp: string; path: string }> } | null;
  /**
   * Temporary files of file targets a restore is writing, from their
   * creation to their rename or removal. What a killed restore left here is
   * removed by the next restore from this replica (whatever its target),
   * unless a live process holds its lock.
   */
  writing?: string[];
}

const EMPTY_STATE: ReplicaState = { format: 1, svol: { restoredSeq: '0', restoredTs: null, inProgress: null }, devices: {} };

export async function readReplicaState(dir: string): Promise<ReplicaState> {
  const seqOk = (x: unknown): boolean => typeof x === 'string' && /^\d{1,20}$/.test(x);
  return readJsonFile(join(dir, 'state.json'), () => structuredClone(EMPTY_STATE), (x) => {
    const v = x as ReplicaState;
    if (v.format !== 1 || typeof v.svol !== 'object' || !seqOk(v.svol.restoredSeq) || (v.svol.inProgress !== null && !seqOk(v.svol.inProgress?.seq)) || typeof v.devices !== 'object') {
      throw new Error('unexpected fields');
    }
    const digits = (x: unknown): boolean => typeof x === 'string' && /^\d{1,30}$/.test(x);
    const files = v.svol.files;
    if (files !== undefined && (files === null || typeof files !== 'object' || !Object.values(files).every((f) => typeof f === 'object' && f !== null && digits(f.dev) && digits(f.ino) && digits(f.size) && digits(f.mtimeNs)))) {
      throw new Error('"svol.files" is not a list of files (dev, ino, size, mtimeNs)');
    }
    // Files a restore removes: only ever a restore's temporary name, given in full.
    if (v.writing !== undefined && !(Array.isArray(v.writing) && v.writing.every((t) => typeof t === 'string' && isAbsolute(t) && isRestoreTemp(t)))) {
      throw new Error('"writing" names a file that is not a restore\'s temporary file');
    }
    return v;
  }, (why) => new JshipError('REPLICA_BAD', `${join(dir, 'state.json')} is damaged: ${why}`, { hint: 'move it away: the SVOLs are then rebuilt from the base at the next restore' }));
}

export async function writeReplicaState(dir: string, s: ReplicaState): Promise<void> {
  await writeFileAtomic(join(dir, 'state.json'), `${JSON.stringify(s, null, 2)}\n`);
}

