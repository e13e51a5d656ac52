import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { LinkPrimary } from '../../src/link/link-primary.js';
import { runPull } from '../../src/link/link-secondary.js';
import { readRegistry } from '../../src/link/registry.js';
import { parseHostPort } from '../../src/io/sockets.js';

import { secondaryLag } from '../../src/link/lag.js';
import { forgetSecondary } from '../../src/link/forget.js';
import { importTapes } from '../../src/replica/import.js';
import { planRestore } from '../../src/replica/restore-plan.js';
import { Replica } from '../../src/replica/replica.js';
import { KiB, MiB, tempDir } from '../helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';
import { events, expectRestoresTo, linkedGroup, snapshot } from './helpers.js';

describe('link fan-out', () => {
  const dir = tempDir();

  it('two secondaries of different speeds: each has its own position, purge follows the slowest (and a tape awaiting its ack); status shows the lag', async () => {
    const { g, group, key } = await linkedGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    await writeMixed(group, 30, 1);
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log, maxTapeBytes: 32 * KiB });
    try {
      const from = parseHostPort(primary.address as string, '--from');
      const fast = join(dir, 'fast');
      const slow = join(dir, 'slow');
      const pull = (rep: string, name: string) => runPull({ replicaDir: rep, name, key, log: events().log, from, once: true });
      await pull(fast, 'fast');
      await pull(slow, 'slow');
      const s1 = await snapshot(group, dir, 's1');
      for (let round = 0; round < 5; round++) {
        await writeMixed(group, 40, 10 + round);
        await pull(fast, 'fast'); // the fast one pulls every round, the slow one never meanwhile
        const reg = await readRegistry(g);
        const slowPos = BigInt(reg.secondaries.find((s) => s.name === 'slow')!.confirmed.seq);
        const fastPos = BigInt(reg.secondaries.find((s) => s.name === 'fast')!.confirmed.seq);
        expect(fastPos).toBe(group.journal.writtenSeq - 1n);
        expect(slowPos).toBe(s1.seq);
        // Purge never passes the slowest secondary.
        expect(group.journal.outSeq).toBe(slowPos + 1n);
      }
      const lag = secondaryLag(await group.status(), await readRegistry(g));
      const slowLag = lag.find((l) => l.name === 'slow')!;
      expect(Number(slowLag.records)).toBe(200);
      expect(slowLag.bytes).toBeGreaterThan(0);
      expect(slowLag.seconds).toBeGreaterThan(0);
      expect(lag.find((l) => l.name === 'fast')!.records).toBe('0');
      // A tape written with --keep-until-ack pins the journal too, once the slow one has caught up.
      await exportTo(group, join(dir, 'tapes'), { keepUntilAck: true });
      await writeMixed(group, 20, 50);
      const tapeEnd = group.journal.writtenSeq - 21n;
      await pull(slow, 'slow');
      await pull(fast, 'fast');
      expect(group.journal.outSeq).toBeLessThanOrEqual(1n + (await readRegistry(g)).secondaries.reduce((m, s) => (BigInt(s.confirmed.seq) < m ? BigInt(s.confirmed.seq) : m), tapeEnd));
      const s2 = await snapshot(group, dir, 's2');
      await expectRestoresTo(slow, dir, s1, 'slow-s1');
      await expectRestoresTo(slow, dir, s2, 'slow-s2');
      await expectRestoresTo(fast, dir, s2, 'fast-s2');
      // Forgetting a secondary unpins the journal.
      const before = group.journal.outSeq;
      await forgetSecondary(group, 'slow');
      expect((await readRegistry(g)).secondaries.map((s) => s.name)).toEqual(['fast']);
      expect(group.journal.outSeq).toBeGreaterThanOrEqual(before);
    } finally {
      await primary.stop();
      await group.close();
    }
  }, 60_000);

  it('tapes and the link feed one replica: overlapping records are taken once, and restores are exact', async () => {
    const { group, key } = await linkedGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    const tapes = join(dir, 'tapes');
    await writeMixed(group, 50, 1);
    await exportTo(group, tapes, { base: true, keepUntilAck: true });
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log, maxTapeBytes: 16 * KiB });
    try {
      const from = parseHostPort(primary.address as string, '--from');
      const rep = join(dir, 'rep');
      // The replica starts from tapes, then the link joins (with a base of its own), then more tapes overlap the link's records.
      await importTapes(rep, readdirSync(tapes).filter((n) => n.endsWith('.tar.zst')).map((n) => join(tapes, n)));
      await writeMixed(group, 60, 2);
      const s1 = await snapshot(group, dir, 's1');
      await runPull({ replicaDir: rep, name: 'b', key, log: events().log, from, once: true });
      await writeMixed(group, 60, 3);
      await group.mark('m');
      await runPull({ replicaDir: rep, name: 'b', key, log: events().log, from, once: true });
      await exportTo(group, tapes, { keepUntilAck: true });
      await writeMixed(group, 30, 4);
      const s2 = await snapshot(group, dir, 's2');
      await exportTo(group, tapes, { keepUntilAck: true });
      const report = await importTapes(rep, readdirSync(tapes).filter((n) => n.endsWith('.tar.zst')).map((n) => join(tapes, n)));
      expect(report.ok).toBe(true);
      await runPull({ replicaDir: rep, name: 'b', key, log: events().log, from, once: true });
      await writeMixed(group, 30, 5);
      const s3 = await snapshot(group, dir, 's3');
      await runPull({ replicaDir: rep, name: 'b', key, log: events().log, from, once: true });
      const r = await Replica.open(rep);
      // The two sources cut the same records into different segments.
      const segs = r.catalog.segments().filter((s) => s.kind === 'update');
      const partial = segs.some((a) => a.serial < 0 && segs.some((b) => b.serial > 0 && a.firstSeq <= b.lastSeq && b.firstSeq <= a.lastSeq && (a.firstSeq !== b.firstSeq || a.lastSeq !== b.lastSeq)));
      expect(partial).toBe(true);
      const plan = planRestore(r.catalog, { kind: 'latest' });
      const kinds = new Set(plan.updateSegments.map((s) => (s.serial < 0 ? 'link' : 'tape')));
      // Each sequence number exactly once across both sources.
      const covered = plan.updateSegments.reduce((n, s) => n + Number(s.last - s.first + 1n), 0);
      expect(covered).toBe(Number(plan.seq - plan.from));
      expect([...kinds].sort()).toEqual(['link', 'tape']);
      await r.close();
      await expectRestoresTo(rep, dir, s1, 's1');
      await expectRestoresTo(rep, dir, s2, 's2');
      await expectRestoresTo(rep, dir, s3, 's3');
    } finally {
      await primary.stop();
      await group.close();
    }
  }, 60_000);
});

describe('link secondaries and a journal suspension', () => {
  const dir = tempDir();

  it('two secondaries and the tape chain: the resync base after a suspension goes to one, the others get a full base; all restore to the volumes', async () => {
    const { group, key } = await linkedGroup(dir, { a: 2 * MiB }, { journalSize: 1 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log, maxTapeBytes: 64 * KiB });
    try {
      const from = parseHostPort(primary.address as string, '--from');
      const pull = (rep: string, name: string) => runPull({ replicaDir: rep, name, key, log: events().log, from, once: true });
      const [one, two] = [join(dir, 'one'), join(dir, 'two')];
      await pull(one, 'one');
      await pull(two, 'two');
      const tapes = join(dir, 'tapes');
      await exportTo(group, tapes, { base: true });
      // Nobody pulls: the journal fills and the group suspends; writes go on into the dirty bitmap.
      for (let i = 0; i < 60 && group.state !== 'suspended'; i++) await writeMixed(group, 20, 100 + i);
      expect(group.state).toBe('suspended');
      await writeMixed(group, 20, 999);
      // Both catch up; the next write resumes journaling; the first to export then takes the resync base.
      await pull(one, 'one');
      await pull(two, 'two');
      await exportTo(group, tapes);
      await writeMixed(group, 5, 1500);
      expect(group.state).toBe('resync-pending');
      await pull(one, 'one');
      expect(group.state === 'suspended' || group.state === 'resync-pending').toBe(false);
      await pull(two, 'two');
      // The tape chain, a consumer too, missed the resync base as well: its next export carries a full base.
      const healing = await exportTo(group, tapes);
      expect(healing.base?.scope).toBe('full');
      await writeMixed(group, 10, 2000);
      await pull(one, 'one');
      await pull(two, 'two');
      await exportTo(group, tapes);
      const viaTapes = join(dir, 'via-tapes');
      expect((await importTapes(viaTapes, readdirSync(tapes).filter((n) => n.endsWith('.tar.zst')).map((n) => join(tapes, n)))).ok).toBe(true);
      const s = await snapshot(group, dir, 's');
      await expectRestoresTo(viaTapes, dir, s, 'tapes');
      await expectRestoresTo(one, dir, s, 'one');
      await expectRestoresTo(two, dir, s, 'two');
      // One replica holds the resync base, the other a second full base instead.
      const scopes = async (rep: string): Promise<string[]> => {
        const r = await Replica.open(rep);
        const bases = r.catalog.segments().filter((x) => x.kind === 'base').map((x) => x.baseId);
        const out = r.catalog.markers().filter((m) => m.kind === 'base-started' && bases.includes(m.seq)).map((m) => m.scope ?? '');
        await r.close();
        return out;
      };
      expect(await scopes(one)).toEqual(['full', 'resync']);
      expect(await scopes(two)).toEqual(['full', 'full']);
    } finally {
      await primary.stop();
      await group.close();
    }
  }, 60_000);
});
