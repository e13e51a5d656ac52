import { constants, promises as fsp, readSync, writeSync } from 'node:fs';
import { dirname, basename, join, resolve, sep } from 'node:path';
import { JshipError } from '../core/errors.js';
import { randomBytes } from 'node:crypto';

/**
 * Reads a JSON state file: `absent()` when there is none; `check` turns the
 * parsed value into T or throws saying what does not fit; a file that is
 * not JSON or does not fit becomes `damaged(why)`.
 */
export async function readJsonFile<T>(path: string, absent: () => T, check: (v: unknown) => T, damaged: (why: string) => Error): Promise<T> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return absent();
    throw e;
  }
  try {
    return check(JSON.parse(text));
  } catch (e) {
    throw damaged((e as Error).message);
  }
}

/**
 * `mkdir -p`, one component at a time, with an error that names the
 * component. (Node's recursive mkdir never returns where mkdir(2) answers
 * ENOENT for a parent that exists, as under /proc.)
 */
export async function makeDirs(dir: string): Promise<void> {
  const abs = resolve(dir);
  const parts = abs.split(sep).filter(Boolean);
  let at: string = sep;
  for (const p of parts) {
    at = join(at, p);
    try {
      await fsp.mkdir(at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        if (!(await fsp.stat(at)).isDirectory()) throw new JshipError('USAGE', `${at} is not a directory`, { hint: `name a directory for ${abs}` });
        continue;
      }
      throw new JshipError(code === 'ENOSPC' ? 'IO' : 'USAGE', `cannot create directory ${at}: ${(e as Error).message}`, {
        hint: code === 'EACCES' || code === 'EPERM' ? 'check the permissions of its parent' : code === 'ENOSPC' ? 'the file system is full: free space' : 'name a directory on a writable file system',
      });
    }
  }
}

/** fsync of a directory, so that a rename or a new file in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * The mode of every file jship makes that holds volume data — a PVOL it
 * creates, a tape, a replica's copy of one, a restored image: its owner's
 * only, like the journal (a tape that is not encrypted is the volumes'
 * bytes). umask can only narrow it.
 */
export const DATA_FILE_MODE = 0o600;

/**
 * Writes a file all or nothing: a temporary name in the same directory,
 * fsync, rename over the final name, fsync of the directory. What a writer
 * killed before its rename left under such a name goes at a later write of
 * the same file, once older than any write takes (STALE_TMP_MS).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await removeStaleTmps(path).catch(() => undefined); // tidying only
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const h = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await h.writeFile(data);
    await h.sync();
  } catch (e) {
    await h.close();
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await h.close();
  try {
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await syncDir(dirname(path));
}

/** A temporary file of writeFileAtomic this old was left by a writer that died (a write takes milliseconds; one on another host too). */
const STALE_TMP_MS = 60 * 60_000;

async function removeStaleTmps(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  for (const name of await fsp.readdir(dir)) {
    if (!name.startsWith(prefix) || !/^[0-9a-f]{12}\.tmp$/.test(name.slice(prefix.length))) continue;
    const st = await fsp.lstat(join(dir, name)).catch(() => undefined);
    if (st?.isFile() && Date.now() - st.mtimeMs > STALE_TMP_MS) await fsp.rm(join(dir, name), { force: true });
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await fsp.lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * The most one write(2) of ours hands the kernel. Larger writes into the
 * page cache cost the kernel about twice the system time here: a 1.1 GiB
 * file written from 8 MiB buffers took 1.3-2.3 system-seconds in 8 MiB
 * writes and 0.8-1.0 in 1 MiB ones, every round (docs/BENCHMARKS.md,
 * session 17; smaller still for remote tapes' copies: SMALL_WRITE). Capture's own
 * writes (the PVOL's, the journal's batches) do not go through here: cut to
 * 1 MiB too, the sustained bench ran slower (DECISIONS "Writing files").
 */
export const WRITE_PIECE = 1024 * 1024;

/** Writes all of `data` at `position`, in writes of WRITE_PIECE at most, looping over short writes. */
export async function writeFully(h: fsp.FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await h.write(data, done, Math.min(WRITE_PIECE, data.length - done), position + done);
    done += bytesWritten;
  }
}

/**
 * `writeFully` on the calling thread: for a few KiB, where the trip to the
 * thread pool and back costs more than the copy into the page cache; on a
 * worker; or in SMALL_WRITE pieces (below).
 */
export function writeFullySync(fd: number, data: Uint8Array, position: number, piece = WRITE_PIECE): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, Math.min(piece, data.length - done), position + done);
}

/**
 * The write size of a tape's copy from an object store (import s3://), a
 * stream or the direct link, as rclone's (strace: 32 KiB pwrite64s), on the
 * event loop's thread. In the S3 bench's rounds, a 1.1 GiB download written
 * in 1 MiB writes spent 2.2-3.2 system-seconds in most, nearly all of it
 * copying into the page cache; in 32 KiB writes 0.69-0.75
 * (docs/BENCHMARKS.md, session 18; why, DECISIONS "Writing files"). Through
 * the thread pool, 32 KiB writes cost a round trip each (1.5 s per 1.1 GiB).
 */
export const SMALL_WRITE = 32 * 1024;

/** Fills `b` from `position` on the calling thread (a worker's), looping over short reads: the bytes read (fewer at the end of the file). */
export function readFullySync(fd: number, b: Uint8Array, position: number): number {
  let done = 0;
  while (done < b.length) {
    const n = readSync(fd, b, done, b.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Bytes written after which a file being filled starts a datasync in the
 * background while the writer goes on: the disk writes back as the writer
 * works (decompresses, verifies), and the sync at the end has only the last
 * of it left. 16 MiB: that last sync is on the path of every tape an export
 * writes and every tape a link secondary stores (64 MiB left it 44-52 ms
 * of writeback); a 1 GiB export took 60-100 ms less, a 1 GiB pull 0.15 s
 * less, imports and restores no longer (BENCHMARKS session 15).
 */
export const SYNC_EVERY = 16 * 1024 * 1024;

/**
 * The background datasyncs of one file being filled (one at a time, every
 * SYNC_EVERY bytes written). A background datasync that failed fails
 * `settle`: what it was to make durable may be lost.
 */
export class BackgroundSync {
  readonly #h: fsp.FileHandle;
  #unsynced = 0;
  #syncing: Promise<void> | null = null;
  #failed: { error: unknown } | null = null;

  constructor(h: fsp.FileHandle) {
    this.#h = h;
  }

  /** Counts bytes just written; starts a datasync once SYNC_EVERY are unsynced and none is running. */
  wrote(bytes: number): void {
    this.#unsynced += bytes;
    if (this.#unsynced < SYNC_EVERY || this.#syncing) return;
    this.#unsynced = 0;
    this.#syncing = this.#h.datasync().catch((error: unknown) => {
      this.#failed ??= { error };
    }).finally(() => {
      this.#syncing = null;
    });
  }

  /** Waits for the datasync running, if any; throws what any background datasync failed with. */
  async settle(): Promise<void> {
    await this.#syncing;
    if (this.#failed) throw this.#failed.error;
  }

  /** Waits for the datasync running, if any, whatever its outcome: before a file given up on is closed. */
  async stop(): Promise<void> {
    await this.#syncing;
  }
}

/** Reads exactly `length` bytes at `position`; returns fewer only at the end of the file. */
export async function readFully(h: fsp.FileHandle, length: number, position: number, into?: Buffer, intoOff = 0): Promise<Buffer> {
  const buf = into ?? Buffer.allocUnsafe(length);
  const done = await readInto(h, buf.subarray(intoOff, intoOff + length), position);
  return into ? buf : buf.subarray(0, done);
}

/** Fills `b` from `position`, looping over short reads; returns the bytes read (fewer at the end of the file). */
async function readInto(h: fsp.FileHandle, b: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < b.length) {
    const { bytesRead } = await h.read(b, done, b.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * Where a file really is (its directory's symbolic links resolved) and what
 * names it: device and inode once it exists (so a symbolic or hard link to
 * it is the same file), the device number for a block device.
 */
export async function whereIs(path: string): Promise<{ real: string; id: string }> {
  const dir = await fsp.realpath(dirname(path)).catch(() => resolve(dirname(path)));
  const real = join(dir, basename(path));
  const st = await fsp.stat(real).catch(() => undefined);
  return { real, id: !st ? `path ${real}` : st.isBlockDevice() ? `device ${st.rdev}` : `file ${st.dev}:${st.ino}` };
}
