import { promises as fsp } from 'node:fs';
import { JshipError } from '../core/errors.js';
import { parseAckKey, verifyAck } from '../core/ack.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { groupPaths } from '../journal/group-files.js';
import { applyAck, readChainState, writeChainState } from './chain-state.js';
import { DEFAULT_EXPORT_WAIT_MS, chainTurn } from './export.js';

export interface AckResult {
  acknowledged: bigint;
  journalOut: bigint;
  pendingTapes: number[];
}

/**
 * Applies an acknowledgement written by `jship import --ack-out` (the text
 * of the file, signed with the group's ack key): records it in the chain
 * state and purges what the chain has now secured.
 */
export async function acknowledge(group: JournalGroup, text: string, ackFile: string): Promise<AckResult> {
  // After any export that is running: it rewrites chain.json from its own copy at each tape.
  return chainTurn(group, DEFAULT_EXPORT_WAIT_MS, () => applyAcknowledgement(group, text, ackFile));
}

async function applyAcknowledgement(group: JournalGroup, text: string, ackFile: string): Promise<AckResult> {
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
  const out = await group.purgeSecured();
  return { acknowledged: seq, journalOut: out, pendingTapes: state.pendingAcks.map((p) => p.serial) };
}
