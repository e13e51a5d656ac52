import { constants, promises as fsp, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
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
    let asked = false;
    try {
      for (;;) {
        try {
          return await DirLock.#tryAcquire(path, what, me);
        } catch (e) {
          const owner = isJshipError(e, 'GROUP_LOCKED') ? await readLock(path) : undefined;
          if (!owner?.yields || opts.yields || Date.now() > deadline) throw e;
          // Ask the owner to hand over between two of its units of work, and wait for it.
          if (!asked) await fsp.writeFile(`${path}.want`, JSON.stringify(me));
          asked = true;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      if (asked) await fsp.rm(`${path}.want`, { force: true });
    }
  }

  /** Whether a live process asks for this lock (an owner that yields then releases it). */
  async wanted(): Promise<boolean> {
    const w = await readLock(`${this.path}.want`);
    return w !== undefined && isAlive(w);
  }

  static async #tryAcquire(path: string, what: string, me: LockInfo): Promise<DirLock> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const h = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
        await h.writeFile(JSON.stringify(me));
        await h.close();
        return new DirLock(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = await readLock(path);
      if (owner && isAlive(owner)) {
        throw new JshipError('GROUP_LOCKED', `${what} is in use by process ${owner.pid} on ${owner.host} (since ${owner.since})`, {
          hint: 'one process owns a group at a time: stop that process, or talk to it (its control socket) instead',
          details: { pid: owner.pid, host: owner.host },
        });
      }
      // Stale: its owner is gone. Remove it and try again (another process may win the race; then we report it).
      await fsp.rm(path, { force: true });
    }
    throw new JshipError('GROUP_LOCKED', `${what}: could not take the lock ${path}`, { hint: 'another process keeps taking it; try again' });
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await fsp.rm(this.path, { force: true });
  }
}

/** Who holds the lock, if a live process does. */
export async function lockOwner(path: string): Promise<{ pid: number; host: string } | undefined> {
  const owner = await readLock(path);
  return owner && isAlive(owner) ? { pid: owner.pid, host: owner.host } : undefined;
}

async function readLock(path: string): Promise<LockInfo | undefined> {
  try {
    const v = JSON.parse(await fsp.readFile(path, 'utf8')) as Partial<LockInfo>;
    if (typeof v.pid !== 'number' || typeof v.host !== 'string') return undefined;
    return { pid: v.pid, host: v.host, start: String(v.start ?? ''), since: String(v.since ?? ''), ...(v.yields === true ? { yields: true } : {}) };
  } catch {
    // Unreadable or half-written (its writer died between create and write): stale.
    return undefined;
  }
}

function isAlive(owner: LockInfo): boolean {
  if (owner.host !== hostname()) return true; // cannot check another host: assume it lives
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const start = processStart(owner.pid);
  return start === undefined || owner.start === '' || start === owner.start;
}

function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime), counted after the ")" that ends the command name.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}
