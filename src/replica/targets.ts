import { constants, promises as fsp, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { JshipError, isJshipError, rethrowAt } from '../core/errors.js';
import { DirLock, createLockedFile } from '../io/dir-lock.js';
import { closeLocked, lockVolumeFile } from '../io/volume-file-lock.js';
import { formatSize } from '../core/sizes.js';
import { BackgroundSync, DATA_FILE_MODE, syncDir, writeFully, makeDirs } from '../io/files.js';
import { TouchedMap } from '../core/touched.js';

/** Where one volume is restored to. */
export interface RestoreTarget {
  volume: string;
  path: string;
  kind: 'svol' | 'file' | 'device';
  /** Starts as zeroes (a new file): zero ranges need no writing. */
  fresh: boolean;
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Its descriptor, for writes done on another thread (a frame worker's
   * `pwrite`: SegmentSource.writeParts), and what it is told after each
   * (`wrote`, as `write` does its own bookkeeping). Null: `write` only.
   */
  direct: { fd: number; wrote(offset: number, length: number): void } | null;
  zero(offset: number, length: number): Promise<void>;
  /** Makes all of its `size` bytes zero (a file: truncated to nothing and back, all a hole; a device: written). */
  clear(size: number): Promise<void>;
  /** A file's temporary name until it is renamed into place (commitFiles); null for targets written in place. */
  tmpPath: string | null;
  /**
   * A fresh target's parts that no write, zero or clear touched: they are
   * holes of a new file, zeros without being read (null when not fresh).
   */
  untouched: ((offset: number, length: number) => boolean) | null;
  /** Makes it durable (a file stays under its temporary name: commitFiles renames the group's files together). */
  finish(): Promise<void>;
  abort(): Promise<void>;
  /** Lets another restore write this target (a file's lock, held from its opening to its rename or abort). */
  release(): Promise<void>;
}

const ZEROES = Buffer.alloc(1024 * 1024);

/**
 * A target written through one handle. With `lock` (a lock named by the
 * file's device and inode: an SVOL's), the handle stays open until the lock
 * is released: closed first, the file could be removed and its inode given
 * to a new file while the lock, still held, named it.
 */
function handleTarget(volume: string, path: string, kind: RestoreTarget['kind'], h: fsp.FileHandle, fresh: { size: number } | null, tmpPath: string | null, onAbort: () => Promise<void>, lock?: DirLock): RestoreTarget {
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await h.close();
  };
  const touched = fresh ? new TouchedMap(fresh.size) : null;
  // Written back as the restore goes on; a background datasync that failed fails the restore at finish.
  const syncs = new BackgroundSync(h);
  // A failure says which target (of several, perhaps on several file systems) failed.
  const named = rethrowAt(path);
  const write = async (offset: number, data: Uint8Array): Promise<void> => {
    await writeFully(h, data, offset).catch(named);
    syncs.wrote(data.length);
  };
  return {
    volume, path, kind, fresh: fresh !== null, tmpPath,
    untouched: touched ? (offset, length) => touched.untouched(offset, length) : null,
    write: (offset, data) => {
      touched?.touch(offset, data.length);
      return write(offset, data);
    },
    direct: {
      fd: h.fd,
      wrote(offset, length) {
        touched?.touch(offset, length);
        syncs.wrote(length);
      },
    },
    async zero(offset, length) {
      touched?.touch(offset, length);
      for (let done = 0; done < length; done += ZEROES.length) await write(offset + done, ZEROES.subarray(0, Math.min(ZEROES.length, length - done)));
    },
    async clear(size) {
      if (kind === 'device') return this.zero(0, size);
      await h.truncate(0).catch(named);
      await h.truncate(size).catch(named);
      if (touched && size === touched.size) touched.reset();
      else touched?.touch(0, touched.size);
    },
    async finish() {
      await syncs.settle().catch(named);
      await h.datasync().catch(named);
      if (!lock) await close();
    },
    async abort() {
      await syncs.stop();
      if (!lock) await close().catch(() => undefined);
      await onAbort();
    },
    async release() {
      try {
        await lock?.release();
      } finally {
        await close().catch(() => undefined);
      }
    },
  };
}

/**
 * A file target: written under a temporary name in the same directory and
 * renamed into place when complete (all or nothing). An existing file is
 * replaced only with `force`.
 */
/** Restored images hold what the PVOLs hold: readable by their owner only, unless told otherwise (--mode). */
export const DEFAULT_IMAGE_MODE = DATA_FILE_MODE;

export async function openFileTarget(volume: string, path: string, size: number, force: boolean, mode = DEFAULT_IMAGE_MODE): Promise<RestoreTarget> {
  path = resolve(path);
  const st = await fsp.stat(path).catch(() => undefined);
  if (st && !force) {
    throw new JshipError('TARGET_NOT_USABLE', `${path} exists`, { hint: 'name a new file, or add --force to replace it (it is replaced only once the restore is complete)' });
  }
  if (st && !st.isFile()) throw new JshipError('TARGET_NOT_USABLE', `${path} is not a regular file`, { hint: 'name a file or a block device' });
  const tmp = tmpPathFor(path);
  // One restore at a time writes a file: another one (from another replica) removed this one's temporary
  // file and put its own in its place, and each renamed or removed the other's.
  const { handle: h, lock } = await createLockedFile(tmp, {
    what: `restore target ${path}`,
    read: true,
    mode,
    busy: (e) => new JshipError('TARGET_NOT_USABLE', e.message, { hint: 'another restore is writing this file: wait for it to end, or name another target', details: e.details }),
    prepare: async (created) => {
      try {
        await created.chmod(mode); // exactly this mode, whatever the umask
        await created.truncate(size);
      } catch (e) {
        throw new JshipError('TARGET_NOT_USABLE', `cannot make ${tmp} ${formatSize(size)}: ${(e as Error).message}`, { hint: 'check the file system: its free space and largest file' });
      }
    },
  }).catch((e: unknown) => {
    if (isJshipError(e, 'TARGET_NOT_USABLE')) throw e;
    throw new JshipError('TARGET_NOT_USABLE', `cannot create ${tmp}: ${(e as Error).message}`, { hint: 'check the directory, its permissions and free space' });
  });
  const target = handleTarget(volume, path, 'file', h, { size }, tmp, async () => {
    await fsp.rm(tmp, { force: true });
  });
  // Named by path, not inode: held from its opening to its rename or abort, after its handle is closed.
  return { ...target, release: async () => { await target.release(); await lock.release(); } };
}

/**
 * Removes a file target's temporary file left by a restore that was killed,
 * and its lock: true once it is gone (its directory too). False while a
 * live process writes it, or when it cannot be removed now (the restore
 * that asks goes on all the same).
 */
export async function removeLeftover(tmp: string): Promise<boolean> {
  let lock: DirLock;
  try {
    lock = await DirLock.acquire(`${tmp}.lock`, `restore target ${tmp}`);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
  try {
    await fsp.rm(tmp, { force: true });
  } finally {
    await lock.release();
  }
  return true;
}

/** The temporary name a file target is written under, in the directory of its final name. */
export function tmpPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.jship-restore`);
}

/** Whether `path` is named as tmpPathFor names a restore's temporary file. */
export function isRestoreTemp(path: string): boolean {
  return /^\..+\.jship-restore$/.test(basename(path));
}

/**
 * Renames complete, durable files into place. A rename whose temporary file
 * is gone was done already (by an interrupted run): this rolls a group's
 * renames forward, so a rerun finishes what a killed restore began.
 */
export async function commitFiles(files: Array<{ tmp: string; path: string }>): Promise<number> {
  let renamed = 0;
  const dirs = new Set<string>();
  for (const f of files) {
    try {
      await fsp.rename(f.tmp, f.path);
      renamed++;
      dirs.add(dirname(f.path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  for (const d of dirs) await syncDir(d);
  return renamed;
}

/** A block device, written in place after checks: big enough, not mounted (nor any of its partitions). */
export async function openDeviceTarget(volume: string, path: string, size: number, st: Stats): Promise<RestoreTarget> {
  const dev = `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`;
  const devSize = Number((await fsp.readFile(`/sys/dev/block/${dev}/size`, 'utf8')).trim()) * 512;
  if (devSize < size) {
    throw new JshipError('TARGET_NOT_USABLE', `${path} holds ${formatSize(devSize)}, the volume "${volume}" needs ${formatSize(size)}`, { hint: 'give a device at least as large as the volume' });
  }
  const devs = new Set([dev]);
  const sys = await fsp.realpath(`/sys/dev/block/${dev}`);
  for (const n of await fsp.readdir(sys).catch(() => [] as string[])) {
    const d = await fsp.readFile(join(sys, n, 'dev'), 'utf8').catch(() => undefined);
    if (d && (await fsp.access(join(sys, n, 'partition')).then(() => true, () => false))) devs.add(d.trim());
  }
  const mounts = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const mounted = mounts.split('\n').map((l) => l.split(' ')).find((f) => f[2] !== undefined && devs.has(f[2]));
  if (mounted) {
    throw new JshipError('TARGET_NOT_USABLE', `${path} is mounted (${mounted[4]}) — restoring into it would corrupt a live file system`, { hint: 'unmount it (and its partitions) first, or restore into another device or a file' });
  }
  const h = await fsp.open(path, constants.O_RDWR | constants.O_EXCL).catch((e: Error) => {
    throw new JshipError('TARGET_NOT_USABLE', `cannot open ${path}: ${e.message}`, { hint: 'the device is in use, or jship lacks permission' });
  });
  return handleTarget(volume, path, 'device', h, null, null, async () => undefined);
}

/**
 * The standing secondary copy of a volume, written in place, and locked as
 * a volume file while it is (io/volume-file-lock.ts): an SVOL is a demoted
 * group's volume file, or a promoted group's, and a group serving that file
 * would write it at the same time.
 */
export async function openSvolTarget(volume: string, path: string, size: number): Promise<RestoreTarget> {
  await makeDirs(dirname(path));
  const st = await fsp.stat(path).catch(() => undefined);
  const h = await fsp.open(path, constants.O_RDWR | constants.O_CREAT, DEFAULT_IMAGE_MODE);
  let lock: DirLock | undefined;
  try {
    lock = await lockVolumeFile(h, `SVOL ${path}`).catch((e: unknown) => {
      throw isJshipError(e, 'VOLUME_NOT_USABLE') ? new JshipError('TARGET_NOT_USABLE', e.message, { hint: 'a group serves this file as its volume: stop it before the replica restores into it', details: e.details }) : e;
    });
    if (!st || st.size < size) await h.truncate(size); // new, or the volume grew
    else if (st.size !== size) throw new JshipError('TARGET_NOT_USABLE', `SVOL ${path} has ${st.size} bytes, the volume has ${size}`, { hint: 'move it away; the next restore rebuilds it from the base' });
  } catch (e) {
    await closeLocked([h], lock ? [lock] : []);
    throw e;
  }
  return handleTarget(volume, path, 'svol', h, st ? null : { size }, null, async () => undefined, lock);
}

/** Opens a named target: an existing block device in place, anything else as a file. */
export async function openTarget(volume: string, path: string, size: number, force: boolean, mode?: number): Promise<RestoreTarget> {
  const st = await fsp.stat(path).catch(() => undefined);
  if (st?.isBlockDevice()) return openDeviceTarget(volume, path, size, st);
  return openFileTarget(volume, path, size, force, mode);
}
