import { setTimeout as sleep } from 'node:timers/promises';
import { JshipError, isJshipError } from '../core/errors.js';
import type { JournalGroup, OpenGroupOptions } from '../journal/journal-group.js';
import { openSiteGroup } from './consumers.js';
import { callOwner } from './control-client.js';

/**
 * Runs an operation on a group: here, when the group is free (opened,
 * used, closed), or in the process that owns it (a running `jship serve`),
 * through its control socket. Both ways give the same result.
 */
export async function onGroup<T>(
  dir: string,
  local: (group: JournalGroup) => Promise<T>,
  remote: { op: string; args: Record<string, unknown>; onProgress?: (done: number, total: number) => void },
  openOptions: OpenGroupOptions = {},
  /** How long to wait for a one-shot command (an export, a scan: no control socket) that holds the group; told once it waits. */
  wait: { ms: number; onWait?: (held: JshipError) => void } = { ms: 0 },
): Promise<T> {
  const waitMs = wait.ms;
  const deadline = Date.now() + waitMs;
  let told = false;
  let group: JournalGroup;
  for (;;) {
    try {
      group = await openSiteGroup(dir, openOptions);
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
        if (!told) wait.onWait?.(held);
        told = true;
      }
      await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
    }
  }
  try {
    return await local(group);
  } finally {
    await group.close();
  }
}
