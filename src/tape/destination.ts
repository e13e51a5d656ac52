import { constants, promises as fsp } from 'node:fs';
import { join, dirname, basename, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { JshipError } from '../core/errors.js';
import { createLockedFile } from '../io/dir-lock.js';
import { BackgroundSync, DATA_FILE_MODE, syncDir, writeFully, makeDirs, writeFileAtomic } from '../io/files.js';
import type { TapeTrailer } from './label.js';
import { MANIFEST_NAME, decodeManifest, mergeManifest, type CarryManifest } from './manifest.js';
import type { Throttle } from '../io/throttle.js';
import { BlockedOutput } from './blocked-output.js';
import { verifyTapes } from './verify.js';
import { spawnSync } from 'node:child_process';

/** One tape being written. */
export interface TapeOutput {
  /**
   * Writes `chunk` after what was written before. Resolves once the output
   * is done with `chunk`'s memory: the writer then uses it for another
   * frame (an output that keeps bytes for later keeps a copy). The writer
   * calls it again only once the call before has resolved (it queues the
   * frames after it meanwhile).
   */
  write(chunk: Buffer): Promise<void>;
  /**
   * Makes the tape durable and visible under `name` (files: fsync, rename,
   * fsync of the directory). Returns where it is. `beforeRename` runs after
   * the fsync and before the rename (to record the intent). `tape`: the
   * whole tape's hash (tape/tape-hash.ts) and size, as the writer computed them.
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
  /**
   * Opens tape `serial` of an epoch's chain (`generation`, 1 unless the group
   * was promoted), whose first record has sequence number `firstSeq` (a name
   * chosen now carries all three), for the group `groupId`: a destination that
   * can tell one group's tapes from another's before writing (an object store
   * prefix) refuses another group's.
   */
  open(serial: number, firstSeq: bigint, generation?: number, groupId?: string): Promise<TapeOutput>;
  /**
   * After an export's tapes are all committed (still within the export's
   * turn): a directory rewrites its carry manifest. Returns a problem to
   * report, never throws: the tapes are in place and counted already.
   */
  finish?(groupId: string, tapes: ReadonlyArray<{ serial: number; location: string; bytes: number; sha256: string; trailer: TapeTrailer }>): Promise<string | null>;
}

/** The same destination, its tape bytes paced by `throttle` (a bandwidth limit). */
export function throttled(dest: TapeDestination, throttle: Throttle): TapeDestination {
  return {
    where: dest.where,
    durable: dest.durable,
    splittable: dest.splittable,
    ...(dest.finish ? { finish: dest.finish.bind(dest) } : {}),
    async open(...tape) {
      const out = await dest.open(...tape);
      return {
        async write(chunk) {
          // Under a limit, big chunks go in pieces, so that the pace is even at any rate. With none, a chunk goes
          // whole: a frame the link carries in one piece is cut where it lies by the secondary, never joined.
          const size = throttle.limit.rate === null ? Math.max(1, chunk.length) : PACE_PIECE;
          for (let off = 0; off < chunk.length; off += size) {
            const piece = chunk.subarray(off, off + size);
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

/** How a file destination checks what it wrote (export --verify-after-write). */
export interface ReadBackOptions {
  /** Read each tape back whole from the medium, past the page cache, and verify it before it is renamed into place. */
  verifyAfterWrite?: boolean;
  /** Runs between the write and the read-back (tests alter the tape here to prove the read-back looks). */
  beforeReadBack?: (path: string) => Promise<void>;
}

/** Tapes as files in a directory, each written under a temporary name, fsynced and renamed. */
export class DirDestination implements TapeDestination {
  readonly where: string;
  readonly durable = true;
  readonly splittable = true;
  readonly #dir: string;
  readonly #readBack: ReadBackOptions;

  constructor(dir: string, readBack: ReadBackOptions = {}) {
    this.#dir = resolve(dir);
    this.where = this.#dir;
    this.#readBack = readBack;
  }

  async open(serial: number, _firstSeq?: bigint, _generation?: number, groupId?: string): Promise<TapeOutput> {
    await makeDirs(this.#dir);
    // At every tape: with --next-media, the next tape may go to another medium mounted at the same path.
    if (groupId !== undefined) await this.#checkOwner(groupId);
    return openFileOutput(join(this.#dir, `.jship-${String(serial).padStart(6, '0')}.partial`), (name) => join(this.#dir, name), this.#readBack);
  }

  /**
   * A directory holds one group's tapes: its carry manifest names the group. Another group's export there
   * went through whenever its tape names differed, and its manifest replaced the first group's, which
   * then listed none of that group's tapes. A manifest whose tapes are all gone claims nothing.
   */
  async #checkOwner(groupId: string): Promise<void> {
    const { manifest: m, names } = await this.#manifest();
    if (!m || m.groupId === groupId) return;
    const theirs = m.tapes.filter((t) => names.has(t.file)).map((t) => t.file);
    if (theirs.length === 0) return;
    throw new JshipError('TAPE_EXISTS', `${this.#dir} holds the tapes of group ${m.groupId} (${theirs.length > 2 ? `${theirs.slice(0, 2).join(', ')} and ${theirs.length - 2} more` : theirs.join(', ')}, by its ${MANIFEST_NAME}); this is group ${groupId}`, {
      hint: 'give each group a directory of its own (tape names do not say which group wrote them); nothing was written, counted or purged',
    });
  }

  /** The directory's carry manifest as it is (undefined when missing or unreadable: it is written again), and the names in the directory. */
  async #manifest(): Promise<{ manifest: CarryManifest | undefined; names: Set<string> }> {
    const path = join(this.#dir, MANIFEST_NAME);
    const manifest = await fsp.readFile(path, 'utf8').then((t) => decodeManifest(t, path), () => undefined).catch(() => undefined);
    return { manifest, names: new Set(await fsp.readdir(this.#dir)) };
  }

  /** The directory's carry manifest (jship-manifest.json) gets this export's tapes, beside those still there. */
  async finish(groupId: string, tapes: Parameters<NonNullable<TapeDestination['finish']>>[1]): Promise<string | null> {
    const path = join(this.#dir, MANIFEST_NAME);
    try {
      const { manifest: old, names } = await this.#manifest();
      const added = tapes.map((t) => ({
        serial: t.serial, file: basename(t.location), bytes: t.bytes, sha256: t.sha256,
        updates: t.trailer.updates ? { firstSeq: t.trailer.updates.firstSeq, lastSeq: t.trailer.updates.lastSeq } : null,
        baseId: t.trailer.base?.baseId ?? null,
      }));
      await writeFileAtomic(path, `${JSON.stringify(mergeManifest(old, groupId, added, (f) => names.has(f), new Date()), null, 2)}\n`);
      return null;
    } catch (e) {
      return `the carry manifest ${path} was not updated (${(e as Error).message}): the tapes are in place and counted; the next export to this directory writes it again`;
    }
  }
}

/** One tape as a named file. */
export class FileDestination implements TapeDestination {
  readonly where: string;
  readonly durable = true;
  readonly splittable = false;
  readonly #path: string;
  readonly #readBack: ReadBackOptions;

  constructor(path: string, readBack: ReadBackOptions = {}) {
    this.#path = resolve(path);
    this.where = this.#path;
    this.#readBack = readBack;
  }

  async open(): Promise<TapeOutput> {
    return openFileOutput(join(dirname(this.#path), `.${basename(this.#path)}.partial`), () => this.#path, this.#readBack);
  }
}

/**
 * A stream (standard output): nothing to rename, nothing durable to us. A
 * write resolves when the stream calls back (a file descriptor's stream has
 * then taken the bytes, and the chunk's memory is free again). With
 * a block size, every write is exactly one block and the tape is padded to
 * the last one (for `| dd of=/dev/nst0 bs=…` or a pipe into a drive).
 */
export class StreamDestination implements TapeDestination {
  readonly where: string;
  readonly durable = false;
  readonly splittable = false;
  readonly #out: Writable;
  readonly #blockSize: number | undefined;

  constructor(out: Writable, where = 'standard output', blockSize?: number) {
    this.#out = out;
    this.where = where;
    this.#blockSize = blockSize;
  }

  async open(): Promise<TapeOutput> {
    const out = this.#out;
    const raw = (chunk: Buffer): Promise<void> => new Promise<void>((res, rej) => {
      out.write(chunk, (e) => (e ? rej(e) : res()));
    });
    const blocked = this.#blockSize !== undefined ? new BlockedOutput(this.#blockSize, raw) : undefined;
    return {
      write: (chunk) => (blocked ? blocked.write(chunk) : raw(chunk)),
      commit: async () => {
        await blocked?.end();
        return this.where;
      },
      abort: async () => undefined,
    };
  }
}

/** Errors that mean the medium (or whatever reads the FIFO) took no more. */
const END_OF_MEDIA = new Set(['ENOSPC', 'EIO', 'ENXIO', 'EPIPE', 'EDQUOT']);

/**
 * A tape drive (any character device) or a FIFO, written as a drive wants
 * it: whole blocks of `blockSize` bytes, one per write, the last padded (a
 * zstd skippable frame, so `zstd -t` and `tar -b N --zstd -t` read it). One
 * tape per open; closing the device writes its file mark. Nothing is
 * durable to jship (a drive buffers): the journal is purged only as for
 * standard output. At the end of the medium the tape in progress is not
 * finished, not counted, and the error says so.
 */
export class DeviceDestination implements TapeDestination {
  readonly where: string;
  readonly durable = false;
  readonly splittable = false;
  readonly #path: string;
  readonly #blockSize: number;

  constructor(path: string, blockSize: number) {
    this.#path = resolve(path);
    this.where = this.#path;
    this.#blockSize = blockSize;
  }

  async open(serial: number): Promise<TapeOutput> {
    const path = this.#path;
    // A FIFO's open waits for its reader.
    const h = await fsp.open(path, constants.O_WRONLY);
    let closed = false;
    const out = new BlockedOutput(this.#blockSize, async (block) => {
      let r;
      try {
        r = await h.write(block, 0, block.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        if (!END_OF_MEDIA.has(code)) throw e;
        throw new JshipError('MEDIA_END', `${path}: the medium took no more (${code}) after ${out.blocks} blocks of ${this.#blockSize} bytes of tape ${serial}: that tape is not complete and is not counted; nothing was purged`, {
          hint: 'load the next medium (or restart what reads the FIFO) and run the same export again: it writes the same records, from the same serial',
          details: { device: path, code, blocks: out.blocks, serial },
          cause: e,
        });
      }
      if (r.bytesWritten !== block.length) {
        throw new JshipError('MEDIA_END', `${path}: a write of one ${block.length}-byte block wrote ${r.bytesWritten} bytes (tape ${serial} is not complete and is not counted; nothing was purged)`, {
          hint: 'check the drive\'s block size (mt -f DEVICE status; setblk) against --block-size, then run the same export again',
          details: { device: path, blocks: out.blocks, serial },
        });
      }
    });
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      await h.close();
    };
    return {
      write: (chunk) => out.write(chunk),
      async commit() {
        await out.end();
        // A drive's own flush (fsync is EINVAL on most character devices and on FIFOs).
        await h.sync().catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EINVAL' && e.code !== 'ENOTSUP' && e.code !== 'EROFS') throw e;
        });
        await close();
        return path;
      },
      abort: () => close().catch(() => undefined),
    };
  }
}

async function openFileOutput(tmp: string, finalPath: (name: string) => string, readBack: ReadBackOptions = {}): Promise<TapeOutput> {
  // One export at a time writes a partial file: two groups exporting to one directory at once both wrote
  // .jship-000001.partial, each removed the other's, and one counted (and purged) a tape holding the other's bytes.
  const { handle: h, lock } = await createLockedFile(tmp, {
    what: `the tape file ${tmp}`,
    mode: DATA_FILE_MODE,
    busy: (e) => new JshipError('TAPE_EXISTS', `${e.message}: another export is writing a tape of the same name there`, {
      hint: 'give each group a directory of its own (tape names do not say which group wrote them), or export one after the other; nothing was counted or purged',
      details: e.details,
    }),
  });
  // Written back while the export compresses: the fsync at commit has only the last of the tape left.
  const syncs = new BackgroundSync(h);
  let pos = 0;
  let closed = false;
  return {
    async write(chunk) {
      await writeFully(h, chunk, pos);
      pos += chunk.length;
      syncs.wrote(chunk.length);
    },
    async commit(name, beforeRename, tape) {
      const dest = finalPath(name);
      await syncs.settle();
      await h.sync();
      await h.close();
      closed = true;
      if (readBack.verifyAfterWrite) {
        try {
          await readBack.beforeReadBack?.(tmp);
          await verifyReadBack(tmp, tape);
        } catch (e) {
          await fsp.rm(tmp, { force: true });
          throw e;
        }
      }
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
      // The name is free again; a commit that failed keeps it until abort has removed what it left.
      await lock.release();
      await syncDir(dirname(dest));
      return dest;
    },
    async abort() {
      if (!closed) {
        await syncs.stop();
        await h.close().catch(() => undefined);
      }
      closed = true;
      // Once the lock is let go, the partial name may be another export's: nothing of it is removed.
      if (lock.released) return;
      await fsp.rm(tmp, { force: true });
      await lock.release();
    },
  };
}

/**
 * Reads a tape just written back from the medium and verifies it whole:
 * its pages are dropped from the page cache first (GNU dd's
 * `iflag=nocache count=0`: posix_fadvise DONTNEED over the whole file, which
 * Node has no call for), so the bytes come from the disk, not from memory;
 * then every frame, hash and checksum is checked and the whole tape's
 * hash compared with the writer's.
 */
async function verifyReadBack(path: string, tape: { sha256: string; bytes: number } | undefined): Promise<void> {
  const dd = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { encoding: 'utf8' });
  if (dd.status !== 0) {
    throw new JshipError('IO', `could not drop ${path} from the page cache to read it back from the medium (dd iflag=nocache: ${dd.error?.message ?? dd.stderr.trim()})`, {
      hint: 'install GNU coreutils (dd), or export without --verify-after-write and run jship verify on the medium later. Nothing was counted or purged',
    });
  }
  const [v] = await verifyTapes([path]);
  const problem = !v ? 'nothing was read'
    : !v.ok ? (v.error?.message ?? 'it does not verify')
      : tape && (v.sha256 !== tape.sha256 || v.bytes !== tape.bytes) ? `read back it has hash ${v.sha256?.slice(0, 12)}… over ${v.bytes} bytes; written it had ${tape.sha256.slice(0, 12)}… over ${tape.bytes}` : null;
  if (problem) {
    throw new JshipError('TAPE_VERIFY_FAILED', `the tape written to ${path} did not read back as written: ${problem}; it was removed, and is not counted: nothing it held was purged`, {
      hint: 'the medium (or the path to it) does not keep what is written: check it (dmesg, SMART, the cable), or use another one, then run the same export again',
      details: { path },
    });
  }
}
