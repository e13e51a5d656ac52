import { JournalGroup, type JournalConsumer, type OpenGroupOptions } from '../journal/journal-group.js';
import { readRegistry, slowestConfirmed } from '../link/registry.js';
import { readChainState, securedSeq } from '../tape/chain-state.js';

/**
 * The tape chain: what a durable (or acknowledged) tape holds. It pins
 * nothing until its first tape, so that a group shipped only over the link
 * is purged by its secondaries; a group with neither consumer is never
 * purged.
 */
export const tapeChain: JournalConsumer = {
  name: 'tapes',
  async secured(group) {
    const chain = await readChainState(group.dir);
    return chain.nextSerial > 1 || chain.committing !== null ? securedSeq(chain) : null;
  },
};

/** Every attached link secondary: the slowest one's confirmed tape. */
export const linkSecondaries: JournalConsumer = {
  name: 'link',
  async secured(group) {
    return slowestConfirmed(await readRegistry(group.dir));
  },
};

/** Everything that reads a site's journal: the journal is purged up to what all of them secured. */
export const SITE_CONSUMERS: readonly JournalConsumer[] = [tapeChain, linkSecondaries];

/** Opens a group as its owner: with the site's consumers, so that exports, acks and link sessions purge. */
export function openSiteGroup(dir: string, opts: OpenGroupOptions = {}): Promise<JournalGroup> {
  return JournalGroup.open(dir, { consumers: SITE_CONSUMERS, ...opts });
}
