import { setTimeout as sleep } from 'node:timers/promises';
import { JshipError, isJshipError } from '../core/errors.js';
import type { JournalGroup, OpenGroupOptions } from '../journal/journal-group.js';
import { openSiteGroup } from './consumers.js';
import { HolderWatch, callOwner } from './control-client.js';
import { answerWhileHeld } from './one-shot-control.js';
import { lockOwner, stillHeld } from '../io/dir-lock.js';
import { groupPaths } from '../journal/group-files.js';

export interface OnGroupOptions {
  open?: OpenGroupOptions;
  /** How long to wait for a one-shot command (an export, a scan: no control socket) that holds the group. */
  waitMs?: number;
  /** Told once when it starts waiting. */
  onWait?: (held: JshipError) => void;
}

/**
 * Runs an operation on a group: here, when the group is free (opened,
 * used, closed; meanwhile this process answers status for it), or in the
 * process that owns it (a running `jship serve`), through its control
 * socket. Both ways give the same result.
 */
export async function onGroup<T>(
  dir: string,
  local: (group: JournalGroup) => Promise<T>,
  remote: { op: string; args: Record<string, unknown>; onProgress?: (done: number, total: number) => void },
  o: OnGroupOptions = {},
): Promise<T> {
  const waitMs = o.waitMs ?? 0;
  const deadline = Date.now() + waitMs;
  let told = false;
  const holders = new HolderWatch();
  let group: JournalGroup;
  for (;;) {
    try {
      group = await openSiteGroup(dir, o.open ?? {});
      break;
    } catch (e) {
      if (!isJshipError(e, 'GROUP_LOCKED')) throw e;
      try {
        return (await callOwner(dir, remote.op, remote.args, e, remote.onProgress)) as T;
      } catch (held) {
        // A one-shot command on its way out ends a control connection it has not answered yet: the process
        // seen answering as one, still holding the lock, is still it (HolderWatch), not a server gone wrong.
        const oneShot = isJshipError(held, 'GROUP_LOCKED') && held.details.oneShot === true;
        const leaving = !oneShot && isJshipError(held, 'OWNER_UNREACHABLE') && holders.judge(e, undefined)?.kind === 'one-shot';
        if (oneShot) holders.judge(e, { kind: 'one-shot' });
        else if (!leaving) throw held;
        if (Date.now() >= deadline) {
          throw leaving ? held : stillHeld(held as JshipError, waitMs);
        }
        if (!told) o.onWait?.(held);
        told = true;
      }
      await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
    }
  }
  try {
    const control = await answerWhileHeld(group);
    try {
      return await local(group);
    } finally {
      await control.close();
    }
  } finally {
    await group.close();
  }
}

/**
 * Waits (up to `o.waitMs`, told once to `o.onWait`) while a one-shot command
 * (an export, a scan) holds the group, and returns once none does: a server
 * owns it, a process that does not answer holds it (onGroup then refuses it
 * as before), or it is free. For what must happen before the group is asked
 * for and must not wait meanwhile: `mark`'s before-hook freezes a file
 * system, which should not stay frozen behind a nightly export.
 */
export async function whenNoOneShot(dir: string, o: Pick<OnGroupOptions, 'waitMs' | 'onWait'>): Promise<void> {
  const waitMs = o.waitMs ?? 0;
  const deadline = Date.now() + waitMs;
  let told = false;
  const holders = new HolderWatch();
  for (;;) {
    const owner = await lockOwner(groupPaths(dir).lock);
    if (!owner) return;
    const locked = new JshipError('GROUP_LOCKED', `group ${dir} is in use by process ${owner.pid} on ${owner.host} (a one-shot command)`, {
      hint: 'run this again once it has ended, or let it wait longer',
      details: { pid: owner.pid, host: owner.host, oneShot: true },
    });
    // One on its way out still counts (HolderWatch): a mark that stopped waiting then ran its hooks and failed.
    if ((await holders.ask(dir, locked))?.kind !== 'one-shot') return;
    if (Date.now() >= deadline) throw stillHeld(locked, waitMs);
    if (!told) o.onWait?.(locked);
    told = true;
    await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
  }
}
