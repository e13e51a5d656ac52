import type { JournalGroup } from '../journal/journal-group.js';
import { readRegistry, slowestConfirmed } from '../link/registry.js';
import { readChainState, securedSeq } from './chain-state.js';

/**
 * Purges the journal up to the smallest position every consumer has
 * secured (DESIGN invariant 5): the tape chain's (a tape durable, or
 * acknowledged) and each link secondary's confirmed read. A group that has
 * link secondaries and never exported a tape is purged by its secondaries
 * alone (the tape chain pins nothing until its first tape). Returns
 * journal-out after the purge.
 */
export async function purgeSecured(group: JournalGroup): Promise<bigint> {
  const chain = await readChainState(group.dir);
  const registry = await readRegistry(group.dir);
  const tapesPin = chain.nextSerial > 1 || chain.committing !== null || registry.secondaries.length === 0;
  let limit = tapesPin ? securedSeq(chain) : null;
  const slowest = slowestConfirmed(registry);
  if (slowest !== null && (limit === null || slowest < limit)) limit = slowest;
  const last = group.journal.writtenSeq - 1n;
  if (limit === null) return group.journal.outSeq;
  const to = limit < last ? limit : last;
  return to >= group.journal.outSeq ? group.purge(to) : group.journal.outSeq;
}
