import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import { JshipError } from '../core/errors.js';
import { parseAckKey, verifyAck } from '../core/ack.js';
import { JournalGroup } from '../journal/journal-group.js';
import { groupPaths } from '../journal/group-files.js';
import { applyAck, readChainState, securedSeq, writeChainState } from '../tape/chain-state.js';
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
      const group = await JournalGroup.open(dir);
      try {
        const key = parseAckKey(await fsp.readFile(groupPaths(group.dir).ackKey, 'utf8'), groupPaths(group.dir).ackKey);
        const seq = verifyAck(text, key, group.config.groupId, ackFile);
        let state = await readChainState(group.dir);
        if (seq > BigInt(state.exportedSeq)) {
          throw new JshipError('ACK_INVALID', `${ackFile} acknowledges seq ${seq}, but only ${state.exportedSeq} was exported`, {
            hint: 'the acknowledgement does not belong to this chain of tapes; nothing was purged',
          });
        }
        state = applyAck(state, seq);
        await writeChainState(group.dir, state);
        const secured = securedSeq(state);
        const last = group.journal.writtenSeq - 1n;
        const to = secured < last ? secured : last;
        const out = to >= group.journal.outSeq ? await group.purge(to) : group.journal.outSeq;
        emit(opts, { acknowledged: seq, journalOut: out, pendingTapes: state.pendingAcks.map((p) => p.serial) }, () => [
          `acknowledged through seq ${seq}; journal-out is now seq ${out}${state.pendingAcks.length > 0 ? `; tapes still awaiting an ack: ${state.pendingAcks.map((p) => p.serial).join(', ')}` : ''}`,
        ]);
      } finally {
        await group.close();
      }
    });
}
