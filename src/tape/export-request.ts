import { promises as fsp } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { JshipError, param } from '../core/errors.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { readKeyFile } from './crypto.js';
import { DeviceDestination, DirDestination, FileDestination, StreamDestination, throttled, type ReadBackOptions, type TapeDestination } from './destination.js';
import { Throttle } from '../io/throttle.js';
import { exportGroup, type ExportResult, type NextMedium } from './export.js';
import { DEFAULT_ZSTD_LEVEL, MAX_ZSTD_LEVEL, MIN_ZSTD_LEVEL } from './frame-pool.js';
import type { TapeTrailer } from './label.js';
import { runHook } from '../io/hooks.js';
import { isStoreUrl, storeFor, type StoreSettings } from './stores.js';
import { checkResyncRequest } from '../core/resync-request.js';
import { resyncChunks } from '../journal/resync-chunks.js';
import { readJsonFile } from '../io/files.js';

/**
 * An export as the user asks for it: plain values (paths, flags), so that
 * it can be run here or sent to the process that owns the group.
 */
export interface ExportRequest {
  /** A directory (existing, or named with a trailing /), a new file, or - for standard output. */
  to: string;
  base?: boolean;
  mediaSize?: number;
  keepUntilAck?: boolean;
  purgeOnClose?: boolean;
  /** Path of a 32-byte key file. */
  encryptKey?: string;
  allowEmpty?: boolean;
  /** Write plaintext although the chain's last tape was encrypted. */
  allowPlaintext?: boolean;
  /** How long to wait for a running export of the same group (ms). */
  waitMs?: number;
  /** How to reach the store when `to` is an s3:// URL. */
  s3?: StoreSettings;
  /** At most this many tape bytes per second to the destination (rclone's --bwlimit). */
  bwlimit?: number;
  /** Write whole blocks of this size (a tape drive, a FIFO, standard output). */
  blockSize?: number;
  /** The destination must be on the file system mounted here (a carried disk that may not be attached). */
  requireMount?: string;
  /** Reed-Solomon parity frames at this share of each group of frames (1..100 %). */
  parity?: number;
  /** Read each tape back whole from the medium, past the page cache, and check every hash before it counts. */
  verifyAfterWrite?: boolean;
  /** At the end of a medium: run this command (sh -c) to load the next one, then go on. */
  nextMedia?: string;
  /**
   * Path of a resync request an old primary being demoted wrote
   * (`jship demote --follow TAPES`): write a resync base of the chunks it
   * lacks (core/resync-request.ts) instead of a full base.
   */
  resyncFor?: string;
  /** zstd's compression level for the tapes (checkZstdLevel); default DEFAULT_ZSTD_LEVEL. */
  zstdLevel?: number;
}

/** Checks a parity share (export --parity): a percentage above 0, at most 100. */
export function checkParity(p: number): number {
  if (!Number.isFinite(p) || p <= 0 || p > 100) {
    throw new JshipError('USAGE', `${param('parity')} ${p}: give a percentage above 0 and at most 100`, { hint: `e.g. ${param('parity')} 10 (10 % more bytes; any 2 of each 20 frames may be lost)` });
  }
  return p;
}

/**
 * Checks a zstd level (export --zstd-level): an integer from -7 to 19, as
 * the zstd tool takes them (-N is its --fast=N). Any level reads back with
 * any zstd: the level is not part of the format.
 */
export function checkZstdLevel(n: number): number {
  if (!Number.isInteger(n) || n < MIN_ZSTD_LEVEL || n > MAX_ZSTD_LEVEL || n === 0) {
    throw new JshipError('USAGE', `${param('zstdLevel')} ${n}: give a whole number from ${MIN_ZSTD_LEVEL} to -1 or from 1 to ${MAX_ZSTD_LEVEL}`, {
      hint: `${param('zstdLevel')} ${DEFAULT_ZSTD_LEVEL} is the default; higher levels make smaller tapes for more CPU, -1 to ${MIN_ZSTD_LEVEL} (zstd's fast levels 1 to 7) spend less CPU on data that compresses little`,
    });
  }
  return n;
}

/** A tape drive's usual block size: what a device or FIFO is written with unless told. */
export const DEFAULT_DEVICE_BLOCK = 64 * 1024;

/** The request with its paths made absolute (for another process with another working directory). */
export function absoluteRequest(req: ExportRequest): ExportRequest {
  return {
    ...req,
    to: req.to === '-' || isStoreUrl(req.to) || isAbsolute(req.to) ? req.to : resolve(req.to) + (req.to.endsWith('/') ? '/' : ''),
    ...(req.encryptKey !== undefined ? { encryptKey: resolve(req.encryptKey) } : {}),
    ...(req.requireMount !== undefined ? { requireMount: resolve(req.requireMount) } : {}),
    ...(req.resyncFor !== undefined ? { resyncFor: resolve(req.resyncFor) } : {}),
  };
}

/**
 * Refuses a destination that is not on the file system mounted at
 * `mountPoint`: the carried disk is not attached, and the tapes would land
 * on the file system under its empty mount point (and be purged from the
 * journal as if they had been carried away).
 */
export async function checkMounted(mountPoint: string, to: string): Promise<void> {
  const mp = resolve(mountPoint);
  const dest = resolve(to);
  if (dest !== mp && !dest.startsWith(`${mp}/`)) {
    throw new JshipError('USAGE', `${param('to')} ${to} is not under ${param('requireMount')} ${mp}`, { hint: `give a ${param('to')} inside the mount point, e.g. ${param('to')} ` + join(mp, 'jship') + '/' });
  }
  const st = await fsp.stat(mp).catch(() => undefined);
  const up = await fsp.stat(resolve(mp, '..')).catch(() => undefined);
  const notMounted = (why: string): JshipError => new JshipError('MEDIA_NOT_MOUNTED', `${mp} ${why}: nothing was written, nothing purged`, {
    hint: 'attach and mount the disk (mount it at the point given to --require-mount), then run the same export again',
    details: { mountPoint: mp },
  });
  if (!st?.isDirectory() || !up) throw notMounted('does not exist');
  // A mount point is on another device than its parent (or is the root itself).
  if (st.dev === up.dev && st.ino !== up.ino) throw notMounted('is not a mount point (is the disk attached and mounted?)');
  // What exists of the destination's path must be on that file system (not another mount below it).
  let at = dest;
  for (;;) {
    const s = await fsp.stat(at).catch(() => undefined);
    if (s) {
      if (s.dev !== st.dev) throw notMounted(`is a mount point, but ${at} is on another file system`);
      return;
    }
    at = dirname(at);
  }
}

/**
 * A directory (existing, or named with a trailing /), a file, a tape drive
 * or FIFO, an s3://BUCKET/PREFIX, or - for `stdout`. `blockSize` applies to
 * drives, FIFOs and standard output only.
 */
export async function destinationFor(to: string, stdout?: Writable, s3: StoreSettings = {}, blockSize?: number, readBack: ReadBackOptions = {}): Promise<TapeDestination> {
  const blocks = (what: string): void => {
    if (blockSize !== undefined) throw new JshipError('USAGE', `${param('blockSize')} applies to a tape drive, a FIFO or standard output, not to ${what}`, { hint: `leave ${param('blockSize')} out` });
  };
  const noReadBack = (what: string, hint = 'rewind the medium and run jship verify on it after the export'): void => {
    if (readBack.verifyAfterWrite) throw new JshipError('USAGE', `${param('verifyAfterWrite')} reads tapes back from files and directories, not from ${what}`, { hint });
  };
  if (isStoreUrl(to)) {
    const store = storeFor(to);
    blocks(store.what);
    noReadBack(store.what, `the store checks each upload against its checksum; jship verify ${to} reads the tapes back`);
    return store.destination(to, s3);
  }
  if (to === '-') {
    if (!stdout) {
      throw new JshipError('USAGE', 'a tape to standard output cannot be written by the process that serves the group', {
        hint: 'while jship serve runs, export to a directory, a file or a tape drive',
      });
    }
    noReadBack('standard output');
    return new StreamDestination(stdout, 'standard output', blockSize);
  }
  const st = await fsp.stat(to).catch(() => undefined);
  if (st?.isCharacterDevice() || st?.isFIFO()) {
    noReadBack('a tape drive or FIFO');
    return new DeviceDestination(to, blockSize ?? DEFAULT_DEVICE_BLOCK);
  }
  blocks(st?.isDirectory() || to.endsWith('/') ? 'a directory' : 'a file');
  if (st?.isBlockDevice()) throw new JshipError('USAGE', `${to} is a block device: jship writes tapes to tape drives (character devices), FIFOs, directories, new files and object storage`, { hint: 'to carry tapes on a disk, mount its file system and export to a directory on it' });
  if (st?.isDirectory() || to.endsWith('/')) return new DirDestination(to, readBack);
  if (st) throw new JshipError('TAPE_EXISTS', `${to} exists already`, { hint: 'tapes are never overwritten: name a new file, or a directory' });
  return new FileDestination(to, readBack);
}

/** One tape of an export as reported: what its trailer says in a few fields, not its list of segments. */
export interface ExportedTape {
  serial: number;
  name: string;
  location: string;
  bytes: number;
  sha256: string;
  records: number;
  updates: TapeTrailer['updates'];
  base: TapeTrailer['base'];
}

/**
 * What an export reports to whoever asked: its size grows with the number of
 * tapes, never with the segments, markers or parity frames in them, so that
 * it crosses the owner's control socket (one line) however much was exported.
 */
export interface ExportReport extends Omit<ExportResult, 'tapes'> {
  tapes: ExportedTape[];
}

export function reportExport(r: ExportResult): ExportReport {
  return {
    ...r,
    tapes: r.tapes.map((t) => ({ serial: t.serial, name: t.name, location: t.location, bytes: t.bytes, sha256: t.sha256, records: t.trailer.records, updates: t.trailer.updates, base: t.trailer.base })),
  };
}

/**
 * Checks the request, then exports (here, or in the owner for a CLI verb)
 * and reports it; progress is reported as (raw bytes done, estimated total).
 * `throttle`, when given, paces the tape bytes (its rate may be changed while
 * the export runs); else `req.bwlimit` makes one.
 */
export async function runExport(group: JournalGroup, req: ExportRequest, onProgress?: (done: number, total: number) => void, stdout?: Writable, throttle?: Throttle, prompt?: (m: NextMedium) => Promise<void>): Promise<ExportReport> {
  const key = req.encryptKey !== undefined ? await readKeyFile(req.encryptKey) : undefined;
  if (req.resyncFor !== undefined && req.base) throw new JshipError('USAGE', `${param('resyncFor')} and ${param('base')}: give one`, { hint: `a demoted site that asked for a resync gets the chunks it lacks; ${param('base')} sends a full copy to everyone` });
  const resync = req.resyncFor !== undefined ? await readResyncFor(group, req.resyncFor) : undefined;
  const pace = throttle ?? (req.bwlimit !== undefined ? new Throttle(req.bwlimit) : undefined);
  if (req.requireMount !== undefined) {
    if (req.to === '-' || isStoreUrl(req.to)) throw new JshipError('USAGE', `${param('requireMount')} goes with ${param('to')} DIR or FILE on a mounted disk`, { hint: 'leave it out for standard output and object storage' });
    await checkMounted(req.requireMount, req.to);
  }
  if (req.nextMedia !== undefined && (req.to === '-' || isStoreUrl(req.to))) {
    throw new JshipError('USAGE', `${param('nextMedia')} goes with a directory, a file or a tape drive: standard output and object storage have no medium to change`, { hint: `leave ${param('nextMedia')} out` });
  }
  const plain = await destinationFor(req.to, stdout, req.s3, req.blockSize, req.verifyAfterWrite ? { verifyAfterWrite: true } : {});
  if (req.purgeOnClose && plain.durable) throw new JshipError('USAGE', `${param('purgeOnClose')} applies to standard output and tape drives only`, { hint: 'files are purged once they are durable' });
  const destination = pace ? throttled(plain, pace) : plain;
  const st = await group.status();
  const total = Number(st.journal.bytes) + (req.base ? group.volumes.reduce((n, v) => n + v.size, 0) : 0) + (resync ? resync.chunks.reduce((n, c) => n + c.length, 0) * group.config.chunkSize : 0);
  return reportExport(await exportGroup(group, {
    destination,
    ...(req.base ? { base: true } : {}),
    ...(resync ? { resyncChunks: resync.chunks, resyncFor: resync.id } : {}),
    ...(req.mediaSize !== undefined ? { mediaSize: req.mediaSize } : {}),
    ...(req.keepUntilAck ? { keepUntilAck: true } : {}),
    ...(req.purgeOnClose ? { purgeOnClose: true } : {}),
    ...(key ? { key } : {}),
    ...(req.allowEmpty ? { allowEmpty: true } : {}),
    ...(req.allowPlaintext ? { allowPlaintext: true } : {}),
    ...(req.parity !== undefined ? { parity: req.parity } : {}),
    ...(req.zstdLevel !== undefined ? { zstdLevel: req.zstdLevel } : {}),
    ...(req.nextMedia !== undefined ? { nextMedia: nextMediaCommand(req.nextMedia) } : prompt ? { nextMedia: prompt } : {}),
    ...(req.waitMs !== undefined ? { waitMs: req.waitMs } : {}),
    ...(req.s3 ? { s3: req.s3 } : {}),
    ...(onProgress ? { onProgress: (n: number) => onProgress(n, total) } : {}),
  }));
}


/** How long a --next-media command may take (an operator swapping a disk, an autoloader): then the export stops. */
export const NEXT_MEDIA_TIMEOUT_MS = 24 * 3600_000;

/**
 * Runs --next-media's command (sh -c) at the end of a medium, with
 * JSHIP_MEDIA_WHERE (the destination), JSHIP_MEDIA_NUMBER (the medium to
 * load, from 2), JSHIP_MEDIA_COUNTED (serials finished on the medium that
 * ended) and JSHIP_NEXT_SERIAL; exit 0 means the next medium is in place.
 */
export function nextMediaCommand(command: string, timeoutMs = NEXT_MEDIA_TIMEOUT_MS): (m: NextMedium) => Promise<void> {
  return async (m) => {
    const r = await runHook(command, timeoutMs, {
      JSHIP_MEDIA_WHERE: m.where, JSHIP_MEDIA_NUMBER: String(m.medium), JSHIP_MEDIA_COUNTED: m.counted.join(','), JSHIP_NEXT_SERIAL: String(m.nextSerial),
    }).done;
    if (r.ok) return;
    const how = r.timedOut ? 'timed out' : r.signal ? `was killed (${r.signal})` : `failed (exit ${r.code})`;
    throw new JshipError('MEDIA_END', `${m.where}: the medium ended${m.counted.length > 0 ? ` (tape${m.counted.length > 1 ? 's' : ''} ${m.counted.join(', ')} finished on it and counted)` : ''}, and --next-media "${command}" ${how}${r.output.trim() ? `: ${r.output.trim().slice(-400)}` : ''}`, {
      hint: 'load the next medium by hand and run the same export again: it goes on after the last counted tape; nothing past them was purged',
      details: { where: m.where, medium: m.medium, counted: m.counted.join(',') },
    });
  };
}

/**
 * --resync-for FILE: the request a demoted old primary wrote, checked
 * against this group (same group, the epoch right after the old primary's,
 * the same takeover point): the chunks of the resync base, and the id its
 * base-started marker carries so that the old primary finds it among others.
 */
async function readResyncFor(group: JournalGroup, path: string): Promise<{ id: string; chunks: number[][] }> {
  const bad = (why: string): never => {
    throw new JshipError('DEMOTE_REFUSED', `--resync-for ${path}: ${why}`, {
      hint: 'give the resync-request.json that jship demote --follow TAPES wrote at the old primary, to the group that took over from it; nothing was exported',
    });
  };
  const f = await readJsonFile<unknown>(path, () => bad('no such file'), (x) => x, (why) => new JshipError('DEMOTE_REFUSED', `--resync-for ${path}: ${why}`, { hint: 'carry the file again from the old primary' }));
  const o = (typeof f === 'object' && f !== null ? f : {}) as { format?: unknown; groupId?: unknown; request?: unknown };
  if (o.format !== 1 || typeof o.groupId !== 'string' || o.request === undefined) bad('it is not a resync request of jship demote');
  if (o.groupId !== group.config.groupId) bad(`it is of group ${String(o.groupId)}; this group is ${group.config.groupId}`);
  const request = checkResyncRequest(o.request, (why) => bad(`its request ${why}`));
  if (request.id === undefined) bad('its request has no id');
  return { id: request.id as string, chunks: resyncChunks(group, request, (why) => bad(`the old primary ${why}`)) };
}
