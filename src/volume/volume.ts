import { constants, fstatSync, promises as fsp, type Stats } from 'node:fs';
import { JshipError } from '../core/errors.js';
import { byteLength, sliceBytes, type Bytes } from '../core/bytes.js';
import type { ExtentSpec, VolumeSpec } from '../core/volume-spec.js';
import { formatSize } from '../core/sizes.js';
import { DATA_FILE_MODE } from '../io/files.js';
import type { PvolWriter } from './pvol-writer.js';
import type { DirLock } from '../io/dir-lock.js';
import { closeLocked, lockVolumeFile } from '../io/volume-file-lock.js';

/** One file or block device of a volume, placed at `start` in the volume's address space. */
export interface Extent {
  path: string;
  start: number;
  size: number;
  blockDevice: boolean;
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/**
 * A PVOL (or a restore target): one file or block device, or a volume group of
 * several concatenated in order (patent §0030, Fig. 16: the mapping table is
 * the list of extents with their start offsets).
 */
export class Volume {
  readonly name: string;
  readonly size: number;
  readonly extents: readonly Extent[];
  readonly #handles: fsp.FileHandle[];
  /** The locks of its regular files while it writes them (io/volume-file-lock.ts). */
  readonly #locks: DirLock[];
  /** Its own writes not yet in the files, and whether one began since the last look (changedOutside). */
  #writing = 0;
  #wrote = false;
  /** Each regular file's last write (ns) at the last look; undefined before the first. */
  #seen: Array<bigint | null> | undefined;

  private constructor(name: string, extents: Extent[], handles: fsp.FileHandle[], locks: DirLock[]) {
    this.name = name;
    this.extents = extents;
    this.#handles = handles;
    this.#locks = locks;
    this.size = extents.reduce((s, e) => s + e.size, 0);
  }

  /**
   * Opens (and with `create`, creates missing files of) a volume. Files named
   * with a size are created at that size when missing and must have it when
   * present; block devices must already exist.
   */
  static async open(spec: VolumeSpec, opts: { create?: boolean; readOnly?: boolean } = {}): Promise<Volume> {
    const extents: Extent[] = [];
    const handles: fsp.FileHandle[] = [];
    const locks: DirLock[] = [];
    try {
      let start = 0;
      for (const ext of spec.extents) {
        const { handle, size, blockDevice } = await openExtent(spec.name, ext, opts);
        handles.push(handle);
        // A file written by one volume at a time, as a block device is (O_EXCL): the same file in two groups,
        // or twice in one, under any name.
        if (!blockDevice && !opts.readOnly) locks.push(await lockVolumeFile(handle, `volume "${spec.name}": ${ext.path}`));
        extents.push({ path: ext.path, start, size, blockDevice });
        start += size;
      }
    } catch (e) {
      await closeLocked(handles, locks);
      throw e;
    }
    return new Volume(spec.name, extents, handles, locks);
  }

  /** Checks that [offset, offset+length) lies inside the volume. */
  checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new JshipError('VOLUME_OUT_OF_RANGE', `volume "${this.name}": range ${offset}+${length} is outside its ${this.size} bytes`, {
        hint: `offsets must be within 0..${this.size}`,
        details: { volume: this.name, offset, length, size: this.size },
      });
    }
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkRange(offset, length);
    const buf = into ?? Buffer.allocUnsafe(length);
    await this.#each(offset, length, async (h, pos, bufOff, len) => {
      let done = 0;
      while (done < len) {
        const { bytesRead } = await h.read(buf, bufOff + done, len - done, pos + done);
        if (bytesRead === 0) {
          throw new JshipError('IO', `volume "${this.name}": unexpected end of file at ${pos + done}`, {
            hint: 'the file shrank while jship had it open; restore its size',
          });
        }
        done += bytesRead;
      }
    });
    return buf;
  }

  /** Writes `data` (in one piece, or several written with one `pwritev`) at `offset`. */
  async write(offset: number, data: Bytes): Promise<void> {
    const length = byteLength(data);
    this.checkRange(offset, length);
    await this.#own(() => this.#each(offset, length, async (h, pos, bufOff, len) => {
      let done = 0;
      while (done < len) {
        const rest = sliceBytes(data, bufOff + done, bufOff + len);
        const { bytesWritten } = rest instanceof Uint8Array ? await h.write(rest, 0, rest.length, pos + done) : await h.writev(rest as Uint8Array[], pos + done);
        done += bytesWritten;
      }
    }));
  }

  /** Writes through a PvolWriter: small writes batched onto its worker thread. */
  async writeBatched(writer: PvolWriter, offset: number, data: Uint8Array): Promise<void> {
    this.checkRange(offset, data.length);
    await this.#own(() => this.#each(offset, data.length, (h, pos, bufOff, len) => writer.write(h.fd, pos, data.subarray(bufOff, bufOff + len))));
  }

  /** One of its own writes: counted from before it begins until it is in the files, whatever its end. */
  async #own(write: () => Promise<void>): Promise<void> {
    this.#writing++;
    this.#wrote = true;
    try {
      await write();
    } finally {
      this.#writing--;
    }
  }

  /**
   * Whether a regular file of the volume was written by another process
   * since the last look: its last write (mtime) moved while none of the
   * volume's own writes began. A look while one of its own writes is
   * running, or after one began, tells nothing (false) and starts again;
   * the first look only remembers. A block device keeps no last write.
   * Synchronous: no write of this process begins during it.
   */
  changedOutside(): boolean {
    if (this.#writing > 0) return false;
    const now = this.#handles.map((h, i) => (this.extents[i]?.blockDevice ? null : fstatSync(h.fd, { bigint: true }).mtimeNs));
    const before = this.#seen;
    const quiet = !this.#wrote;
    this.#seen = now;
    this.#wrote = false;
    return before !== undefined && quiet && now.some((m, i) => m !== before[i]);
  }

  /** Writes zeroes over a range (also used for TRIM, so that a trimmed range reads back as zeroes). */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length);
    for (let done = 0; done < length; done += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, length - done);
      await this.write(offset + done, ZERO_CHUNK.subarray(0, n));
    }
  }

  /** Makes every write so far durable (fdatasync of each file or device). */
  async sync(): Promise<void> {
    await Promise.all(this.#handles.map((h) => h.datasync()));
  }

  async close(): Promise<void> {
    await closeLocked(this.#handles, this.#locks);
  }

  async #each(offset: number, length: number, fn: (h: fsp.FileHandle, pos: number, bufOff: number, len: number) => Promise<void>): Promise<void> {
    let done = 0;
    let i = this.#extentAt(offset);
    const jobs: Promise<void>[] = [];
    while (done < length) {
      const ext = this.extents[i];
      const h = this.#handles[i];
      if (!ext || !h) throw new JshipError('VOLUME_OUT_OF_RANGE', `volume "${this.name}": offset ${offset + done} has no extent`);
      const pos = offset + done - ext.start;
      const len = Math.min(length - done, ext.size - pos);
      jobs.push(fn(h, pos, done, len));
      done += len;
      i++;
    }
    await Promise.all(jobs);
  }

  #extentAt(offset: number): number {
    let lo = 0;
    let hi = this.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.extents[mid]?.start ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

async function openExtent(name: string, ext: ExtentSpec, opts: { create?: boolean; readOnly?: boolean }): Promise<{ handle: fsp.FileHandle; size: number; blockDevice: boolean }> {
  let st: Stats | undefined;
  try {
    st = await fsp.stat(ext.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(name, ext.path, e);
  }
  if (!st) {
    if (!opts.create || ext.size === undefined) {
      throw new JshipError('VOLUME_NOT_FOUND', `volume "${name}": ${ext.path} does not exist`, {
        hint: 'check the path, or give a size (NAME=PATH:SIZE) to create the file',
        details: { volume: name, path: ext.path },
      });
    }
    if (ext.size <= 0) throw new JshipError('BAD_VOLUME_SPEC', `volume "${name}": size must be greater than 0`);
    const h = await fsp.open(ext.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, DATA_FILE_MODE).catch((e: unknown) => {
      throw ioError(name, ext.path, e);
    });
    await h.truncate(ext.size);
    return { handle: h, size: ext.size, blockDevice: false };
  }
  let size: number;
  const blockDevice = st.isBlockDevice();
  if (st.isFile()) size = st.size;
  else if (blockDevice) size = await blockDeviceSize(st);
  else {
    throw new JshipError('VOLUME_NOT_USABLE', `volume "${name}": ${ext.path} is neither a regular file nor a block device`, {
      hint: 'give a file or a block device',
    });
  }
  if (ext.size !== undefined && ext.size !== size) {
    throw new JshipError('VOLUME_SIZE_MISMATCH', `volume "${name}": ${ext.path} has ${size} bytes (${formatSize(size)}), not the ${ext.size} given`, {
      hint: 'drop the :SIZE to take the existing size, or name another file',
      details: { volume: name, path: ext.path, size, expected: ext.size },
    });
  }
  if (size === 0) {
    throw new JshipError('VOLUME_NOT_USABLE', `volume "${name}": ${ext.path} is empty`, {
      hint: 'give the file a size first (truncate -s SIZE FILE) or name it with :SIZE when it does not exist yet',
    });
  }
  // A block device is written by one opener at a time (O_EXCL: the kernel refuses a second, and a device with a
  // mounted file system): another group's server, or a restore into the device, is refused with EBUSY.
  const flags = opts.readOnly ? constants.O_RDONLY : constants.O_RDWR | (blockDevice ? constants.O_EXCL : 0);
  const handle = await fsp.open(ext.path, flags).catch((e: unknown) => {
    throw ioError(name, ext.path, e);
  });
  return { handle, size, blockDevice };
}

/** Size of a block device from sysfs (/sys/dev/block/MAJOR:MINOR/size counts 512-byte sectors). */
async function blockDeviceSize(st: Stats): Promise<number> {
  const major = Math.floor(st.rdev / 256) & 0xfff;
  const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
  const text = await fsp.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(text.trim()) * 512;
}

function ioError(volume: string, path: string, e: unknown): JshipError {
  const err = e as NodeJS.ErrnoException;
  const hint = err.code === 'EACCES' || err.code === 'EPERM'
    ? 'check the permissions of the file (jship needs read and write access)'
    : err.code === 'EBUSY' ? 'the device is in use: mounted, or open for writing by another process (another group\'s jship serve, a restore into it); a volume has one writer' : 'check the path';
  return new JshipError('VOLUME_NOT_USABLE', `volume "${volume}": cannot open ${path}: ${err.message}`, { hint, cause: e });
}
