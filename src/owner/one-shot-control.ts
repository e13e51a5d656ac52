import { JshipError } from '../core/errors.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { ControlServer } from './control-server.js';
import type { ServingStatus } from './serving.js';
import { siteStatus } from './site-status.js';

/**
 * While a one-shot command (an export, a scan, an ack, a mark) holds a
 * group, it answers `status` on the group's control socket as `jship serve`
 * does: monitoring (`jship check`, `jship status`) gets the group's figures.
 * Before, it got GROUP_LOCKED, exit 1, for as long as the command ran: on a
 * site without a server, a false alarm every night. Every other operation
 * is refused as the lock refused it (`details.oneShot`): the caller waits for
 * the command to end (export, ack) or is told to run again then. Best
 * effort: where no socket can be made (a file system without Unix sockets),
 * the command goes on, and monitoring is refused as before.
 */
export async function answerWhileHeld(group: JournalGroup): Promise<{ close(): Promise<void> }> {
  const server = new ControlServer(
    { status: async (): Promise<ServingStatus> => ({ ...(await siteStatus(group)), serve: null, oneShot: true }) },
    () => undefined,
    async () => {
      throw new JshipError('GROUP_LOCKED', `group ${group.dir} is held by a one-shot command`, { details: { pid: process.pid, oneShot: true } });
    },
  );
  try {
    await server.listen(group.dir, group.config.groupId);
  } catch {
    await server.close().catch(() => undefined);
    return { close: async () => undefined };
  }
  return server;
}
