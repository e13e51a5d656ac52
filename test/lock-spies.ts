import { readdirSync, readlinkSync } from 'node:fs';
import { vi } from 'vitest';
import { DirLock } from '../src/io/dir-lock.js';

/** Whether this process has `path` open (from /proc/self/fd). */
export function isOpenHere(path: string): boolean {
  return readdirSync('/proc/self/fd').some((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === path;
    } catch {
      return false;
    }
  });
}

/**
 * Runs `fn` and returns, for each lock released meanwhile, whether this
 * process still had `path` open at that moment: a lock named by a file's
 * inode must be released before the file is closed (once closed and removed,
 * the inode may go to a new file that the live lock would then name).
 */
export async function openAtLockRelease(path: string, fn: () => Promise<unknown>): Promise<boolean[]> {
  const seen: boolean[] = [];
  const release = DirLock.prototype.release;
  const spy = vi.spyOn(DirLock.prototype, 'release').mockImplementation(function (this: DirLock) {
    seen.push(isOpenHere(path));
    return release.call(this);
  });
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return seen;
}
