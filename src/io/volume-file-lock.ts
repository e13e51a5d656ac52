import { existsSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JshipError, isJshipError } from '../core/errors.js';
import { DirLock, lockOwner } from './dir-lock.js';

/**
 * Locks on volume files (regular files: a block device is held with O_EXCL
 * by the kernel), by identity, in one directory for the machine: one file
 * named in two groups (or twice in one), by another path or through a link,
 * was written by both servers at once, each over the other's bytes and
 * behind the other's journal.
 */
export function volumeLockDir(): string {
  const set = process.env.JSHIP_LOCK_DIR;
  if (set) return set;
  return existsSync('/run/lock') ? '/run/lock/jship' : join(tmpdir(), 'jship-locks');
}

/** What names a file for its lock: its device, inode and birth time (a stat taken with `bigint: true`). */
export interface VolumeFileId {
  dev: bigint;
  ino: bigint;
  birthtimeNs: bigint;
}

/**
 * The lock's name: the file's device and inode, and its birth time. An inode
 * is given to a new file as soon as the last handle on a removed one closes,
 * and a lock still held for the removed file (by a live process that let go
 * of its handle: closed on garbage collection, say) refused the new one as
 * "in use by" that process. The birth time tells the two apart (0 on a file
 * system that does not keep one, where the name is as it was).
 */
function lockPath(id: VolumeFileId): string {
  return join(volumeLockDir(), `volume-${id.dev}-${id.ino}${id.birthtimeNs === 0n ? '' : `-${id.birthtimeNs}`}.lock`);
}

/**
 * Takes the lock of the volume file open in `handle` (its device, inode and
 * birth time, read from the handle: the file itself, whatever path or link named it).
 * Refused (VOLUME_NOT_USABLE, as a busy block device is) while a live process holds it.
 */
export async function lockVolumeFile(handle: fsp.FileHandle, what: string): Promise<DirLock> {
  const dir = volumeLockDir();
  try {
    // Every user's jship locks its volumes here (as in /tmp): made sticky and writable by all, whatever the
    // umask. One that existed before (JSHIP_LOCK_DIR, set up by the operator) keeps its mode.
    if ((await fsp.mkdir(dir, { recursive: true, mode: 0o1777 })) !== undefined) await fsp.chmod(dir, 0o1777);
  } catch (e) {
    throw new JshipError('IO', `cannot make the volume lock directory ${dir}: ${(e as Error).message}`, {
      hint: 'set JSHIP_LOCK_DIR to a directory every jship process on this machine can write (the same for all)',
    });
  }
  const id = await handle.stat({ bigint: true });
  return DirLock.acquire(lockPath(id), what, {
    busyHint: 'a volume file belongs to one group: another group (or another volume of this one) uses this file as a volume, and both would write it; check the group.json of each, and name another file',
  }).catch((e: unknown) => {
    if (isJshipError(e, 'GROUP_LOCKED')) throw new JshipError('VOLUME_NOT_USABLE', e.message, { ...(e.hint ? { hint: e.hint } : {}), details: e.details });
    throw e;
  });
}

/** The live process that holds the file at `id` as a volume, if one does. */
export function volumeFileHolder(id: VolumeFileId): Promise<{ pid: number; host: string } | undefined> {
  return lockOwner(lockPath(id));
}

/**
 * Lets go of files locked by lockVolumeFile: the locks first, then the
 * handles. A lock names its file by device and inode; once the last handle
 * is closed and the file removed, the inode can be given to a new file at
 * once, and a lock still there, held by this live process, would refuse
 * that file to anyone (VOLUME_NOT_USABLE) until the process ended.
 */
export async function closeLocked(handles: readonly fsp.FileHandle[], locks: readonly DirLock[]): Promise<void> {
  try {
    for (const l of locks) await l.release();
  } finally {
    await Promise.all(handles.map((h) => h.close()));
  }
}
