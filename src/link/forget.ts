import { JshipError } from '../core/errors.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { updateRegistry } from './registry.js';

/** Unregisters a link secondary: it stops pinning the journal, which is purged to what the others secured. */
export async function forgetSecondary(group: JournalGroup, name: string): Promise<{ name: string; confirmedSeq: string; journalOut: bigint }> {
  const confirmedSeq = await updateRegistry(group.dir, (r) => {
    const i = r.secondaries.findIndex((s) => s.name === name);
    if (i < 0) {
      throw new JshipError('USAGE', `group ${group.dir} has no link secondary "${name}"`, { hint: r.secondaries.length ? `its secondaries: ${r.secondaries.map((s) => s.name).join(', ')}` : 'it has none' });
    }
    const [gone] = r.secondaries.splice(i, 1);
    return gone?.confirmed.seq ?? '0';
  });
  return { name, confirmedSeq, journalOut: await group.purgeSecured() };
}
