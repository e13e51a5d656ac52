import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { LinkPrimary } from '../../src/link/link-primary.js';
import { LinkReceiver } from '../../src/link/link-secondary.js';
import { readRegistry } from '../../src/link/registry.js';

import type { LinkEvent } from '../../src/link/primary-session.js';
import { KiB, MiB, jshipJson, tempDir } from '../helpers.js';
import { writeMixed } from '../tape/helpers.js';
import { events, expectRestoresTo, freePort, linkedGroup, snapshot, until } from './helpers.js';

describe('link push', () => {
  const dir = tempDir();

  it('pushes under writes; fails over when the site stops, which keeps pinning the journal; when it comes back the primary returns to it (failback) with no new base, and a restore point taken during the outage restores there; a standby is released once the journal fills', async () => {
    const { g, group, key } = await linkedGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    await writeMixed(group, 40, 1);
    const [pa, pb] = [await freePort(), await freePort()];
    const repA = join(dir, 'a');
    const repB = join(dir, 'b');
    const recv = (rep: string, name: string, port: number) => LinkReceiver.start({ replicaDir: rep, name, key, log: events().log, listen: { host: '127.0.0.1', port } });
    let a = await recv(repA, 'site-a', pa);
    let b: LinkReceiver | undefined;
    const ev = events();
    const primary = await LinkPrimary.start(group, {
      key, log: ev.log, failoverMs: 1500, retryMs: 100, failbackMs: 300, maxTapeBytes: 32 * KiB,
      push: [{ host: '127.0.0.1', port: pa, address: `127.0.0.1:${pa}`, priority: 1 }, { host: '127.0.0.1', port: pb, address: `127.0.0.1:${pb}`, priority: 2 }],
    });
    const site = async (name: string) => (await readRegistry(g)).secondaries.find((s) => s.name === name);
    const confirmed = async (name: string): Promise<bigint> => BigInt((await site(name))?.confirmed.seq ?? '-1');
    const caughtUp = (name: string) => until(`${name} to catch up`, async () => (await confirmed(name)) === group.journal.writtenSeq - 1n);
    try {
      for (let i = 0; i < 5; i++) await writeMixed(group, 30, 10 + i);
      await caughtUp('site-a');
      const s1 = await snapshot(group, dir, 's1');
      await expectRestoresTo(repA, dir, s1, 'a-s1');
      // Site A goes away; a restore point is taken while it is away.
      await a.stop();
      await writeMixed(group, 30, 20);
      await group.mark('during-the-outage');
      const outage = await snapshot(group, dir, 'outage');
      b = await recv(repB, 'site-b', pb);
      await until('failover to site B', () => ev.all.some((e) => e.event === 'failover'));
      const fo = ev.all.find((e) => e.event === 'failover') as LinkEvent;
      expect(fo).toMatchObject({ from: `127.0.0.1:${pa}`, to: `127.0.0.1:${pb}`, standby: 'site-a' });
      await caughtUp('site-b');
      await writeMixed(group, 10, 21);
      await caughtUp('site-b');
      const s2 = await snapshot(group, dir, 's2');
      await expectRestoresTo(repB, dir, s2, 'b-s2');
      // A, left behind, still pins the journal: nothing it lacks was purged.
      expect(await site('site-a')).toMatchObject({ standby: true });
      expect((await site('site-a'))?.detached).toBeUndefined();
      expect(group.journal.outSeq).toBeLessThanOrEqual((await confirmed('site-a')) + 1n);
      // A comes back: the primary returns to it, and it goes on from its own position (no new base).
      a = await recv(repA, 'site-a', pa);
      await until('failback to site A', () => ev.all.some((e) => e.event === 'failback'));
      expect(ev.all.find((e) => e.event === 'failback')).toMatchObject({ from: `127.0.0.1:${pb}`, to: `127.0.0.1:${pa}`, standby: 'site-b' });
      await writeMixed(group, 30, 30);
      await caughtUp('site-a');
      expect(await site('site-a')).toMatchObject({ needsBase: false });
      expect((await site('site-a'))?.standby).toBeUndefined();
      await expectRestoresTo(repA, dir, outage, 'a-outage', 'seq');
      await expectRestoresTo(repA, dir, s1, 'a-s1-again', 'seq');
      const s3 = await snapshot(group, dir, 's3');
      await expectRestoresTo(repA, dir, s3, 'a-s3');
      // B is the standby now; once the journal is nearly full it is released (and A goes on).
      expect(await site('site-b')).toMatchObject({ standby: true });
      for (let i = 0; i < 400 && !ev.all.some((e) => e.event === 'released'); i++) await writeMixed(group, 20, 100 + i);
      expect(ev.all.find((e) => e.event === 'released')).toMatchObject({ secondaries: ['site-b'] });
      expect(await site('site-b')).toMatchObject({ detached: true });
      await caughtUp('site-a');
      expect(group.journal.outSeq).toBeGreaterThan(await confirmed('site-b'));
    } finally {
      await primary.stop();
      await a.stop();
      await b?.stop();
      await group.close();
    }
  }, 120_000);

  it('usage: --failback-after goes with several candidates and at least 100ms', () => {
    const one = jshipJson('link', 'push', join(dir, 'g'), '--to', '127.0.0.1:9', '--failback-after', '1m');
    expect(one).toExit(2);
    expect(one.out.error.message).toMatch(/--failback-after 1m: it goes with several candidates/);
    const sites = join(dir, 'sites.json');
    writeFileSync(sites, JSON.stringify([{ address: '127.0.0.1:9', priority: 1 }, { address: '127.0.0.1:10', priority: 2 }]));
    const tiny = jshipJson('link', 'push', join(dir, 'g'), '--candidates', sites, '--failback-after', '10ms');
    expect(tiny).toExit(2);
    const bad = jshipJson('serve', join(dir, 'g'), '--link-candidates', sites, '--link-failback-after', 'soon');
    expect(bad).toExit(2);
  });
});
