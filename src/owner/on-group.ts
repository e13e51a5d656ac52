import { isJshipError } from '../core/errors.js';
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
): Promise<T> {
  let group: JournalGroup;
  try {
    group = await openSiteGroup(dir, openOptions);
  } catch (e) {
    if (!isJshipError(e, 'GROUP_LOCKED')) throw e;
    return (await callOwner(dir, remote.op, remote.args, e, remote.onProgress)) as T;
  }
  try {
    return await local(group);
  } finally {
    await group.close();
  }
}
