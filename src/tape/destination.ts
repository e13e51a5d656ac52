import { constants, promises as fsp } from 'node:fs';
import { join, dirname, basename, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { JshipError } from '../core/errors.js';
import { syncDir, writeFully, makeDirs } from '../io/files.js';
import type { Throttle } from '../io/throttle.js';

/** One tape being written. */
export interface TapeOutput {
  write(chunk: Buffer): Promise<void>;
  /**
   * Makes the tape durable and visible under `name` (files: fsync, rename,
   * fsync of the directory). Returns where it is. `beforeRename` runs after
   * the fsync and before the rename (to record the intent). `tape`: the
   * whole tape's SHA-256 and size, as the writer computed them.
   */
  commit(name: string, beforeRename?: (finalPath: string) => Promise<void>, tape?: { sha256: string; bytes: number }): Promise<string>;
  /** Removes what was written. */
  abort(): Promise<void>;
}

/** Where an export writes its tapes. */
export interface TapeDestination {
  /** Human description for messages. */
  readonly where: string;
  /** Committed tapes are durable (files) rather than handed to a stream. */
  readonly durable: boolean;
  /** Can hold more than one tape (a directory), so --media-size may split. */
  readonly splittable: boolean;
  /** Opens tape `serial`, whose first record has sequence number `firstSeq` (a name chosen now carries both). */
  open(serial: number, firstSeq: bigint): Promise<TapeOutput>;
}

/** The same destination, its tape bytes paced by `throttle` (a bandwidth limit). */
export function throttled(dest: TapeDestination, throttle: Throttle): TapeDestination {
  return {
    where: dest.where,
    durable: dest.durable,
    splittable: dest.splittable,
    async open(serial, firstSeq) {
      const out = await dest.open(serial, firstSeq);
      return {
        async write(chunk) {
          // Big chunks go in pieces, so that the pace is even at any rate.
          for (let off = 0; off < chunk.length; off += PACE_PIECE) {
            const piece = chunk.subarray(off, off + PACE_PIECE);
            await throttle.pass(piece.length);
            await out.write(piece);
          }
        },
        commit: (name, beforeRename, tape) => out.commit(name, beforeRename, tape),
        abort: () => out.abort(),
      };
    },
  };
}

const PACE_PIECE = 256 * 1024;

/** Tapes as files in a directory, each written under a temporary name, fsynced and renamed. */
export class DirDestination implements TapeDestination {
  readonly where: string;
  readonly durable = true;
  readonly splittable = true;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = resolve(dir);
    this.where = this.#dir;
  }

  async open(serial: number): Promise<TapeOutput> {
    await makeDirs(this.#dir);
    return openFileOutput(join(this.#dir, `.jship-${String(serial).padStart(6, '0')}.partial`), (name) => join(this.#dir, name));
  }
}

/** One tape as a named file. */
export class FileDestination implements TapeDestination {
  readonly where: string;
  readonly durable = true;
  readonly splittable = false;
  readonly #path: string;

  constructor(path: string) {
    this.#path = resolve(path);
    this.where = this.#path;
  }

  async open(): Promise<TapeOutput> {
    return openFileOutput(join(dirname(this.#path), `.${basename(this.#path)}.partial`), () => this.#path);
  }
}

/** A stream (standard output, a tape device opened as a stream): nothing to rename, nothing durable to us. */
export class StreamDestination implements TapeDestination {
  readonly where: string;
  readonly durable = false;
  readonly splittable = false;
  readonly #out: Writable;

  constructor(out: Writable, where = 'standard output') {
    this.#out = out;
    this.where = where;
  }

  async open(): Promise<TapeOutput> {
    const out = this.#out;
    return {
      write: (chunk) => new Promise<void>((res, rej) => {
        out.write(chunk, (e) => (e ? rej(e) : res()));
      }),
      commit: async () => this.where,
      abort: async () => undefined,
    };
  }
}

async function openFileOutput(tmp: string, finalPath: (name: string) => string): Promise<TapeOutput> {
  await fsp.rm(tmp, { force: true });
  const h = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  let pos = 0;
  let closed = false;
  return {
    async write(chunk) {
      await writeFully(h, chunk, pos);
      pos += chunk.length;
    },
    async commit(name, beforeRename) {
      const dest = finalPath(name);
      await h.sync();
      await h.close();
      closed = true;
      await beforeRename?.(dest);
      // link + unlink: a rename that never replaces an existing tape.
      try {
        await fsp.link(tmp, dest);
      } catch (e) {
        await fsp.rm(tmp, { force: true });
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new JshipError('TAPE_EXISTS', `${dest} exists already`, { hint: 'tapes are never overwritten: move the old one away or write to another place' });
        }
        throw e;
      }
      await fsp.unlink(tmp);
      await syncDir(dirname(dest));
      return dest;
    },
    async abort() {
      if (!closed) await h.close().catch(() => undefined);
      closed = true;
      await fsp.rm(tmp, { force: true });
    },
  };
}
