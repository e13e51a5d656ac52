import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import { JshipError } from '../core/errors.js';
import { resolve } from 'node:path';
import { onGroup } from '../owner/on-group.js';
import { acknowledge } from '../tape/acknowledge.js';
import { DEFAULT_EXPORT_WAIT_MS } from '../tape/export.js';
import { oneShotWait } from './waiting.js';
import { emit, type CommonOptions } from './output.js';

export function registerAck(program: Command): void {
  program
    .command('ack')
    .description('apply an acknowledgement from the replica (written by `jship import --ack-out`): purge what it covers')
    .argument('<GROUP_DIR>', 'the journal group')
    .argument('<ACK_FILE>', 'the acknowledgement file')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, ackFile: string, opts: CommonOptions) => {
      const text = await fsp.readFile(ackFile, 'utf8').catch((e: Error) => {
        throw new JshipError('USAGE', `cannot read ${ackFile}: ${e.message}`, { hint: 'give the file written by jship import --ack-out' });
      });
      // Like an export in a server, an export holding the group on its own is waited for (its purge comes first).
      const r = await onGroup(dir, (g) => acknowledge(g, text, ackFile), { op: 'ack', args: { text, file: resolve(ackFile) } }, oneShotWait('ack', DEFAULT_EXPORT_WAIT_MS));
      emit(opts, r, () => [
        `acknowledged through seq ${r.acknowledged}; journal-out is now seq ${r.journalOut}${r.pendingTapes.length > 0 ? `; tapes still awaiting an ack: ${r.pendingTapes.join(', ')}` : ''}`,
      ]);
    });
}
