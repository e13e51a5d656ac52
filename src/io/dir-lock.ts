import { constants, promises as fsp, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { JshipError, isJshipError } from '../core/errors.js';

interface LockInfo {
  pid: number;
  host: string;
  /** Start time of the process (from /proc), so that a reused pid is not taken for the owner. */
  start: string;
  since: string;
  /** This owner hands the lock over between its units of work when another process asks (the link receiver). */
  yields?: boolean;
}

export interface AcquireOptions {
  /** Mark the lock as one this owner yields when asked (see `wanted`). */
  yields?: boolean;
  /** How long to wait for an owner that yields (default 10 minutes). */
  waitMs?: number;
  /** What to do when a live process holds the lock (the hint of the refusal). */
  busyHint?: string;
  /** How long to wait for an owner that does not yield (default 0: refused at once), told once to `onBusy`. */
  busyWaitMs?: number;
  onBusy?: (held: JshipError) => void;
}

/**
 * The owner lock of a group (or replica) directory: a file created with
 * O_EXCL that names the owning process. A lock whose process is gone (killed,
 * crashed) is stale and taken over; a live owner is refused with its pid.
 */
export class DirLock {
  readonly path: string;
  #released = false;

  private constructor(path: string) {
    this.path = path;
  }

  static async acquire(path: string, what: string, opts: AcquireOptions = {}): Promise<DirLock> {
    const me: LockInfo = { pid: process.pid, host: hostname(), start: processStart(process.pid) ?? '', since: new Date().toISOString(), ...(opts.yields ? { yields: true } : {}) };
    const deadline = Date.now() + (opts.waitMs ?? 600_000);
    const busyDeadline = Date.now() + (opts.busyWaitMs ?? 0);
    let toldBusy = false;
    // Each waiter asks in a file of its own, so that one served and withdrawn leaves the others' asks standing.
    const ask = `${path}${ASK}${randomBytes(8).toString('hex')}`;
    let asked = false;
    try {
      for (;;) {
        // An owner that yields takes no turn while another process waits for the lock: the waiters go
        // first. Without this, an owner that lets go and takes the lock again between its units of
        // work (the link receiver, tape after tape) keeps a waiting restore out for as long as work comes.
        if (opts.yields) {
          const w = (await liveAsks(path))[0];
          if (w !== undefined) {
            throw new JshipError('GROUP_LOCKED', `${what} is wanted by process ${w.pid} on ${w.host}, which goes first`, {
              hint: 'this owner hands the lock over between its units of work; it takes it again when that process is done',
              details: { pid: w.pid, host: w.host },
            });
          }
        }
        try {
          return await DirLock.#tryAcquire(path, what, me, opts.busyHint);
        } catch (e) {
          if (!isJshipError(e, 'GROUP_LOCKED')) throw e;
          const owner = await readLockFile(path);
          if (owner === undefined) continue; // released since: try again at once
          if (!owner.info?.yields || opts.yields) {
            // An owner that does not hand over: waited for as long as the caller said, then refused.
            const waitMs = opts.busyWaitMs ?? 0;
            if (Date.now() >= busyDeadline) throw stillHeld(e, waitMs);
            if (!toldBusy) opts.onBusy?.(e);
            toldBusy = true;
            await new Promise((r) => setTimeout(r, Math.min(200, Math.max(1, busyDeadline - Date.now()))));
            continue;
          }
          if (Date.now() > deadline) throw e;
          // Ask the owner to hand over between two of its units of work, and wait for it; the ask is
          // renewed at every look, so that one whose waiter stopped (on another host too) goes stale.
          const now = new Date();
          if (!asked || !(await fsp.utimes(ask, now, now).then(() => true, () => false))) await fsp.writeFile(ask, JSON.stringify(me));
          asked = true;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      if (asked) await fsp.rm(ask, { force: true });
    }
  }

  /** Whether a live process asks for this lock (an owner that yields then releases it). */
  async wanted(): Promise<boolean> {
    return (await liveAsks(this.path)).length > 0;
  }

  static async #tryAcquire(path: string, what: string, me: LockInfo, busyHint = 'one process owns a group at a time: stop that process, or talk to it (its control socket) instead'): Promise<DirLock> {
    // The lock appears with its content in one step: written under a name of our own, then linked
    // (link fails if the name exists). No contender ever reads a lock that is empty or half written.
    const mine = `${path}.${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      // On a full file system this fails (ENOSPC): nothing is left behind, and no empty lock.
      await fsp.writeFile(mine, JSON.stringify(me), { mode: 0o644, flag: 'wx' });
      for (let attempt = 0; attempt < 200; attempt++) {
        try {
          await fsp.link(mine, path);
          await removeOrphans(path).catch(() => undefined); // tidying only: the lock is taken either way
          return new DirLock(path);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        const seen = await readLockFile(path);
        if (!seen) continue; // released meanwhile
        if (seen.info && isAlive(seen.info)) {
          throw new JshipError('GROUP_LOCKED', `${what} is in use by process ${seen.info.pid} on ${seen.info.host} (since ${seen.info.since})`, {
            hint: busyHint,
            details: { pid: seen.info.pid, host: seen.info.host },
          });
        }
        await breakStale(path, seen.ino);
      }
    } finally {
      await fsp.rm(mine, { force: true });
    }
    throw new JshipError('GROUP_LOCKED', `${what}: could not take the lock ${path}`, { hint: 'another process keeps taking it; try again' });
  }

  /** The lock was let go (release). */
  get released(): boolean {
    return this.#released;
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await fsp.rm(this.path, { force: true });
  }
}

export interface LockedFileOptions {
  /** What the file is, in messages. */
  what: string;
  /** Opened for reading as well as writing. */
  read?: boolean;
  mode: number;
  /** The error for a file another live process is writing (given the lock's GROUP_LOCKED, naming that process). */
  busy: (e: JshipError) => JshipError;
  /** Made ready once created (its mode, its size); a failure here removes it too. */
  prepare?: (handle: FileHandle) => Promise<void>;
}

/**
 * Creates `tmp`, a file written by one process at a time under a temporary
 * name: a lock beside it (`TMP.lock`) names its writer, held until the caller
 * releases it (after its rename, or after removing the file). What a writer
 * that died left is removed first: the lock says no live one holds it.
 * Nothing is left behind when the creation fails.
 */
export async function createLockedFile(tmp: string, o: LockedFileOptions): Promise<{ handle: FileHandle; lock: DirLock }> {
  const lock = await DirLock.acquire(`${tmp}.lock`, o.what).catch((e: unknown) => {
    throw isJshipError(e, 'GROUP_LOCKED') ? o.busy(e) : e;
  });
  let handle: FileHandle | undefined;
  try {
    await fsp.rm(tmp, { force: true });
    handle = await fsp.open(tmp, (o.read ? constants.O_RDWR : constants.O_WRONLY) | constants.O_CREAT | constants.O_EXCL, o.mode);
    await o.prepare?.(handle);
    return { handle, lock };
  } catch (e) {
    if (handle) {
      await handle.close();
      await fsp.rm(tmp, { force: true });
    }
    await lock.release();
    throw e;
  }
}

/** A lock's refusal after a wait of `waitMs` that ran out (as it was, when there was no wait). */
export function stillHeld(held: JshipError, waitMs: number): JshipError {
  if (waitMs <= 0) return held;
  return new JshipError('GROUP_LOCKED', `${held.template.message}, still after ${Math.round(waitMs / 1000)} s`, { ...(held.template.hint ? { hint: held.template.hint } : {}), details: held.details });
}

/** Who holds the lock, if a live process does. */
export async function lockOwner(path: string): Promise<{ pid: number; host: string } | undefined> {
  const owner = await readLock(path);
  return owner && isAlive(owner) ? { pid: owner.pid, host: owner.host } : undefined;
}

async function readLock(path: string): Promise<LockInfo | undefined> {
  return (await readLockFile(path))?.info ?? undefined;
}

/**
 * The asks for the lock at `path` (see `acquire`) that live waiters made and
 * renew. One left by a waiter that died is removed; one whose waiter stopped
 * renewing it (on another host, where its process cannot be checked) is ignored.
 */
async function liveAsks(path: string): Promise<LockInfo[]> {
  const dir = dirname(path);
  const prefix = `${basename(path)}${ASK}`;
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith(prefix));
  const asks: LockInfo[] = [];
  for (const name of names) {
    const at = join(dir, name);
    const found = await readLockFile(at);
    const info = found?.info;
    if (!found || !info) continue; // withdrawn meanwhile, or still being written
    if (!isAlive(info)) await fsp.rm(at, { force: true });
    else if (Date.now() - found.mtimeMs < STALE_ASK_MS) asks.push(info);
  }
  return asks;
}

/**
 * Removes the files a contender for the lock at `path` wrote under a name of
 * its own (`LOCK.PID-RAND`, see #tryAcquire) and left when it was killed
 * before it removed them: each names its writer, and only one whose writer
 * is gone goes (a live contender's is about to be linked). One never
 * written (its writer killed at once) goes once it is as old as a stale guard.
 */
async function removeOrphans(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || !/^\d+-[0-9a-f]{8}$/.test(name.slice(prefix.length))) continue;
    const at = join(dir, name);
    const found = await readLockFile(at);
    if (!found) continue;
    if (found.info ? !isAlive(found.info) : Date.now() - found.mtimeMs > STALE_GUARD_MS) await fsp.rm(at, { force: true });
  }
}

/** What follows a lock's name in the name of an ask for it. */
const ASK = '.want-';

/** A waiter renews its ask every 100 ms; one not renewed for this long is gone. */
const STALE_ASK_MS = 10_000;

/**
 * The lock file's owner (null: unreadable, from a writer that died), its
 * inode and when it was last written (an ask's renewal); undefined when
 * there is none.
 */
async function readLockFile(path: string): Promise<{ info: LockInfo | null; ino: number; mtimeMs: number } | undefined> {
  let h: fsp.FileHandle;
  try {
    h = await fsp.open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const { ino, mtimeMs } = await h.stat();
    try {
      const v = JSON.parse(await h.readFile('utf8')) as Partial<LockInfo>;
      if (typeof v.pid !== 'number' || typeof v.host !== 'string') return { info: null, ino, mtimeMs };
      return { info: { pid: v.pid, host: v.host, start: String(v.start ?? ''), since: String(v.since ?? ''), ...(v.yields === true ? { yields: true } : {}) }, ino, mtimeMs };
    } catch {
      return { info: null, ino, mtimeMs };
    }
  } finally {
    await h.close();
  }
}

/**
 * Removes a stale lock, and only that one. Breakers take turns under a guard
 * file (`LOCK.break`, created exclusively): under it, the lock is read again
 * and removed only if it is still the stale file seen (same inode, owner
 * gone). Nothing else removes a lock file but its live owner, and a new lock
 * can only be linked where none is, so no live lock is ever removed.
 */
async function breakStale(path: string, staleIno: number): Promise<void> {
  const guard = `${path}.break`;
  try {
    await fsp.writeFile(guard, String(process.pid), { flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process is breaking it now; a guard left by a breaker that died goes after a while.
    const st = await fsp.stat(guard).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > STALE_GUARD_MS) await fsp.rm(guard, { force: true });
    await new Promise((r) => setTimeout(r, 5));
    return;
  }
  try {
    const now = await readLockFile(path);
    if (now && now.ino === staleIno && !(now.info && isAlive(now.info))) await fsp.rm(path, { force: true });
  } finally {
    await fsp.rm(guard, { force: true });
  }
}

const STALE_GUARD_MS = 10_000;

/** This process, as a lock (or a mount's pin) names it: checked later by `stampAlive`. */
export interface ProcessStamp {
  pid: number;
  host: string;
  /** Start time of the process (from /proc), so that a reused pid is not taken for it. */
  start: string;
}

export function processStamp(): ProcessStamp {
  return { pid: process.pid, host: hostname(), start: processStart(process.pid) ?? '' };
}

/** Whether the process a stamp names still runs (one on another host is assumed to). */
export function stampAlive(owner: ProcessStamp): boolean {
  return isAlive(owner);
}

function isAlive(owner: ProcessStamp): boolean {
  if (owner.host !== hostname()) return true; // cannot check another host: assume it lives
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const stat = processStat(owner.pid);
  // A zombie (killed, not yet waited for by its parent) holds nothing any more.
  if (stat?.state === 'Z' || stat?.state === 'X') return false;
  return stat === undefined || owner.start === '' || stat.start === owner.start;
}

function processStart(pid: number): string | undefined {
  return processStat(pid)?.start;
}

/** A process's state (R, S, D, Z…) and start time, from /proc. */
function processStat(pid: number): { state: string; start: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (state) and field 22 (starttime), counted after the ")" that ends the command name.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [state, start] = [fields[0], fields[19]];
    return state === undefined || start === undefined ? undefined : { state, start };
  } catch {
    return undefined;
  }
}
