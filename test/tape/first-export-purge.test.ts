import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deferred } from '../../src/core/deferred.js';
import { JournalGroup, type JournalConsumer } from '../../src/journal/journal-group.js';
import { tapeChain } from '../../src/owner/consumers.js';
import { exportGroup } from '../../src/tape/export.js';
import { KiB, makeGroup, MiB, tempDir } from '../helpers.js';
import { GatedDir, journalRecords, tapeRecords, writeMixed } from './helpers.js';

// Seen in the soak test (CI, once in session 24 and once in 25): `jship export --base`, the tape chain's first
// export, failed with JOURNAL_PURGED while two link secondaries were pulling from the same server.
describe('the tape chain\'s first export while a link secondary confirms', () => {
  const dir = tempDir();

  it('keeps the records it is about to read: the secondary\'s purge stops short of them', async () => {
    const g = await makeGroup(dir, { a: 2 * MiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    // A secondary that has everything (it confirmed the last record): alone it would purge the whole journal.
    const secondary: JournalConsumer = { name: 'link', secured: async (group) => group.journal.writtenSeq - 1n };
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, consumers: [tapeChain, secondary] });
    try {
      await writeMixed(group, 40);
      const before = await journalRecords(group);
      const go = deferred();
      const to = new GatedDir(join(dir, 'tapes'), go.promise);
      const exporting = exportGroup(group, { destination: to, base: true });
      exporting.catch(() => undefined);
      // The base is being written (the chain pins nothing yet) when the secondary's confirmation purges.
      await to.opened.promise;
      const out = await group.purgeSecured();
      expect(out).toBe(before[0]!.seq);
      go.resolve();
      const r = await exporting;
      // Every record from the chain's start is on the tape, after the base.
      const tape = await tapeRecords(r.tapes[0]!.location);
      expect(tape.base.length).toBeGreaterThan(0);
      expect(tape.updates.slice(0, before.length)).toEqual(before);
      // Once the export is done (and held nothing more), the secondary's purge goes as far as the chain allows.
      expect(await group.purgeSecured()).toBe(r.updates!.lastSeq + 1n);
    } finally {
      await group.close();
    }
  });
});
