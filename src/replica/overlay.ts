import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { JshipError, rethrowAt } from '../core/errors.js';
import { joinBytes } from '../core/bytes.js';
/** The layer keeps whole 512-byte sectors (a partial one is read, merged and written). */
const SECTOR = 512;
import { makeDirs, readFully, writeFully } from '../io/files.js';
import type { NbdExport } from '../nbd/export.js';

/**
 * A throw-away write layer over a read-only export (a mounted point): writes
 * go to a sparse scratch file, sector by sector (a partial sector is read,
 * merged and written whole); reads take written sectors from the scratch and
 * the rest from below. Nothing below is ever written. `discard` removes the
 * scratch file.
 */
export class Overlay {
  readonly path: string;
  readonly #h: fsp.FileHandle;
  readonly #below: NbdExport;
  readonly #written: Uint8Array;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string, h: fsp.FileHandle, below: NbdExport) {
    this.path = path;
    this.#h = h;
    this.#below = below;
    this.#written = new Uint8Array(Math.ceil(Math.ceil(below.size / SECTOR) / 8));
  }

  static async create(dir: string, name: string, below: NbdExport): Promise<Overlay> {
    await makeDirs(dir);
    const path = join(dir, name);
    let h: fsp.FileHandle;
    try {
      h = await fsp.open(path, 'wx+', 0o600);
      await h.truncate(below.size);
    } catch (e) {
      throw new JshipError('IO', `cannot make the scratch file ${path}: ${(e as Error).message}`, { hint: 'name a scratch directory with room and write access (--scratch DIR)' });
    }
    return new Overlay(path, h, below);
  }

  #isWritten(s: number): boolean {
    return ((this.#written[s >> 3] as number) & (1 << (s & 7))) !== 0;
  }

  /** Whether any sector of the range was written. */
  touches(offset: number, length: number): boolean {
    for (let s = Math.floor(offset / SECTOR); s * SECTOR < offset + length; s++) if (this.#isWritten(s)) return true;
    return false;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const end = offset + length;
    const out = await this.#below.read(offset, length);
    // Runs of written sectors come from the scratch file.
    for (let s = Math.floor(offset / SECTOR); s * SECTOR < end;) {
      if (!this.#isWritten(s)) {
        s++;
        continue;
      }
      let e = s;
      while (e * SECTOR < end && this.#isWritten(e)) e++;
      const from = Math.max(offset, s * SECTOR);
      const to = Math.min(end, e * SECTOR);
      await readFully(this.#h, to - from, from, out, from - offset);
      s = e;
    }
    return out;
  }

  /** Writes `data` at `offset` (one at a time: a partial sector is read, merged and written whole). */
  write(offset: number, data: Buffer): Promise<void> {
    const run = this.#queue.then(async () => {
      const first = Math.floor(offset / SECTOR) * SECTOR;
      const last = Math.min(this.#below.size, Math.ceil((offset + data.length) / SECTOR) * SECTOR);
      let block = data;
      if (first !== offset || last !== offset + data.length) {
        block = await this.read(first, last - first);
        data.copy(block, offset - first);
      }
      await writeFully(this.#h, block, first).catch(rethrowAt(this.path)); // the server's log says which scratch file is full
      for (let s = first / SECTOR; s * SECTOR < last; s++) this.#written[s >> 3] = (this.#written[s >> 3] as number) | (1 << (s & 7));
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async discard(): Promise<void> {
    await this.#h.close().catch(() => undefined);
    await fsp.rm(this.path, { force: true });
  }

  async close(): Promise<void> {
    await this.#h.close().catch(() => undefined);
  }
}

const ZERO_PIECE = 4 * 1024 * 1024;

/** Zeroes as writes of zeros, a few MiB at a time (a TRIM of a whole volume allocates no more). */
async function zeroes(overlay: Overlay, offset: number, length: number): Promise<void> {
  for (let at = offset; at < offset + length; at += ZERO_PIECE) await overlay.write(at, Buffer.alloc(Math.min(ZERO_PIECE, offset + length - at)));
}

/** The export with its writes going to `overlay`. */
export function writableExport(below: NbdExport, overlay: Overlay): NbdExport {
  return {
    name: below.name,
    size: below.size,
    description: `${below.description.replace(/, read-only$/, '')}, writes to a throw-away layer`,
    read: (offset, length) => overlay.read(offset, length),
    write: (offset, data) => overlay.write(offset, joinBytes(data)),
    writeZeroes: (offset, length) => zeroes(overlay, offset, length),
    trim: (offset, length) => zeroes(overlay, offset, length),
    cache: async () => undefined,
    // A range with a written sector is data; elsewhere, what the point holds.
    blockStatus: async (offset, length) => (overlay.touches(offset, length) ? [{ length: Math.min(length, below.size - offset), flags: 0 }] : below.blockStatus(offset, length)),
  };
}
