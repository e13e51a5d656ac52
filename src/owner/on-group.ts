import { setTimeout as sleep } from 'node:timers/promises';
import { JshipError, isJshipError } from '../core/errors.js';
import type { JournalGroup, OpenGroupOptions } from '../journal/journal-group.js';
import { openSiteGroup } from './consumers.js';
import { callOwner } from './control-client.js';
import { answerWhileHeld } from './one-shot-control.js';

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
        if (!isJshipError(held, 'GROUP_LOCKED') || held.details.oneShot !== true) throw held;
        if (Date.now() >= deadline) {
          throw waitMs === 0 ? held : new JshipError('GROUP_LOCKED', `${held.message}, still after ${Math.round(waitMs / 1000)} s`, { ...(held.hint ? { hint: held.hint } : {}), details: held.details });
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
