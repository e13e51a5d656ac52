import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

/**
 * What an SVOL file was when the restore that brought it to its point left
 * it: which file (device and inode), its size and its last write (ns). The
 * next restore brings the SVOLs forward from that point only if each file is
 * still that one, unwritten since: one removed, replaced, truncated or
 * written into outside jship (a file system on it mounted read-write for a
 * look) holds no point any more, and records applied over it would give a
 * volume no point ever held.
 */
export interface SvolFile {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
}

export const svolPath = (replicaDir: string, volume: string): string => join(replicaDir, 'svol', `${volume}.img`);

/** The SVOL file as it is now; undefined when there is none. */
export async function svolFile(path: string): Promise<SvolFile | undefined> {
  const st = await fsp.stat(path, { bigint: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  return st && { dev: st.dev.toString(), ino: st.ino.toString(), size: st.size.toString(), mtimeNs: st.mtimeNs.toString() };
}

/**
 * Why an SVOL cannot be brought forward from the point its restore left it
 * at, or null when it can. `left` is what that restore recorded (absent in
 * a state written before jship recorded it: then only a missing file is
 * seen); `writtenSince` when a restore into it was interrupted (its own
 * writes moved the last write: only another file is seen then).
 */
export function svolChange(path: string, left: SvolFile | undefined, now: SvolFile | undefined, writtenSince: boolean): string | null {
  if (!now) return `${path} is missing`;
  if (!left) return null;
  if (now.dev !== left.dev || now.ino !== left.ino) return `${path} is another file than the one restored (it was replaced)`;
  if (now.size !== left.size) return `${path} changed size (${left.size} bytes when restored, ${now.size} now)`;
  if (!writtenSince && now.mtimeNs !== left.mtimeNs) return `${path} was written after its restore, by something other than jship`;
  return null;
}

/** Why the SVOLs cannot be brought forward from the point they hold (one of them changed outside jship since), or null. */
export async function changedSvols(replicaDir: string, volumes: readonly string[], svol: { files?: Record<string, SvolFile>; inProgress: unknown }): Promise<string | null> {
  for (const v of volumes) {
    const path = svolPath(replicaDir, v);
    const why = svolChange(path, svol.files?.[v], await svolFile(path), svol.inProgress !== null);
    if (why) return why;
  }
  return null;
}
