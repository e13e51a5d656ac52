import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHostPort } from '../../src/io/sockets.js';
import { LinkPrimary } from '../../src/link/link-primary.js';
import { runPull } from '../../src/link/link-secondary.js';
import { jshipJson, tempDir } from '../helpers.js';
import { events, linkedGroup } from '../link/helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';

describe('retention counts only the bases a replica can restore from', () => {
  const dir = tempDir();

  it('a replica fed by tapes does not count the bases the primary sent to link secondaries (their records went over the link only); it says which it counted, from where, and which not', async () => {
    const { group, key } = await linkedGroup(dir, undefined, { existingFiles: true });
    const tapes = join(dir, 'tapes');
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log });
    try {
      await writeMixed(group, 40, 1);
      await exportTo(group, tapes, { base: true, keepUntilAck: true });
      await writeMixed(group, 40, 2);
      // Two new link secondaries: each gets a base of its own, marked in the journal.
      for (const name of ['s1', 's2']) {
        await runPull({ replicaDir: join(dir, name), name, key, log: events().log, from: parseHostPort(primary.address as string, '--from'), once: true });
        await writeMixed(group, 20, 3);
      }
      await exportTo(group, tapes, { keepUntilAck: true });
    } finally {
      await primary.stop();
      await group.close();
    }
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    // Three bases are marked complete on the tapes; one (the tape chain's) is held.
    const plan = jshipJson('expire', rep, '--keep-last', '1');
    expect(plan).toExit(0);
    expect(plan.out.remove).toEqual([]);
    expect(plan.out.reason).toMatch(/^keep the last 1 usable base\(s\), from base \d+ \(from tapes, complete at seq \d+\); not counted: bases \d+, \d+ \(marked complete, but this replica does not hold their base records/);
    expect(jshipJson('expire', rep, '--keep-last', '2').out.reason).toMatch(/^fewer than 2 usable bases \(1\): everything stays/);
    // And the link secondary counts its own base, from the link.
    expect(jshipJson('expire', join(dir, 's1'), '--keep-last', '1').out.reason).toMatch(/from the direct link/);
    expect(readdirSync(join(rep, 'tapes')).length).toBe(2);
  }, 120_000);
});
