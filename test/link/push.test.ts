import { join } from 'node:path';
import net from 'node:net';
import { describe, expect, it } from 'vitest';

import { LinkPrimary } from '../../src/link/link-primary.js';
import { LinkReceiver } from '../../src/link/link-secondary.js';
import { readRegistry } from '../../src/link/registry.js';

import type { LinkEvent } from '../../src/link/primary-session.js';
import { KiB, MiB, tempDir } from '../helpers.js';
import { writeMixed } from '../tape/helpers.js';
import { events, expectRestoresTo, linkedGroup, snapshot } from './helpers.js';

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('link push', () => {
  const dir = tempDir();

  it('pushes to a receiver under writes; fails over to the next candidate when it stops, and a site that comes back resumes from its own position', async () => {
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
      key, log: ev.log, failoverMs: 1500, retryMs: 100, maxTapeBytes: 32 * KiB,
      push: [{ host: '127.0.0.1', port: pa, address: `127.0.0.1:${pa}`, priority: 1 }, { host: '127.0.0.1', port: pb, address: `127.0.0.1:${pb}`, priority: 2 }],
    });
    const confirmed = async (name: string): Promise<bigint> => BigInt((await readRegistry(g)).secondaries.find((s) => s.name === name)?.confirmed.seq ?? '-1');
    const caughtUp = (name: string) => until(`${name} to catch up`, async () => (await confirmed(name)) === group.journal.writtenSeq - 1n);
    try {
      // Writes while it pushes.
      for (let i = 0; i < 5; i++) await writeMixed(group, 30, 10 + i);
      await caughtUp('site-a');
      const s1 = await snapshot(group, dir, 's1');
      await expectRestoresTo(repA, dir, s1, 'a-s1');
      // Site A goes away: after 1.5 s unreachable the primary moves to B, which gets a base and the updates.
      await a.stop();
      await writeMixed(group, 30, 20);
      b = await recv(repB, 'site-b', pb);
      await until('failover to site B', () => ev.all.some((e) => e.event === 'failover'));
      const fo = ev.all.find((e) => e.event === 'failover') as LinkEvent;
      expect(fo.from).toBe(`127.0.0.1:${pa}`);
      expect(fo.to).toBe(`127.0.0.1:${pb}`);
      expect(typeof fo.downSeconds).toBe('number');
      await caughtUp('site-b');
      // B's history starts with its new base (taken when the failover reached it): a point is restorable
      // there only once that base is complete, so the snapshot comes after more writes that B confirmed.
      await writeMixed(group, 10, 21);
      await caughtUp('site-b');
      const s2 = await snapshot(group, dir, 's2');
      await expectRestoresTo(repB, dir, s2, 'b-s2');
      // A, left behind, no longer pins the journal.
      const reg = await readRegistry(g);
      expect(reg.secondaries.find((s) => s.name === 'site-a')?.detached).toBe(true);
      expect(group.journal.outSeq).toBe((await confirmed('site-b')) + 1n);
      // A comes back and B goes away: the primary returns to A, which resumes from its own position (with a new base: its records were purged).
      a = await recv(repA, 'site-a', pa);
      await b.stop();
      b = undefined;
      await writeMixed(group, 30, 30);
      await until('failover back to site A', () => ev.all.filter((e) => e.event === 'failover').length >= 2);
      await caughtUp('site-a');
      const s3 = await snapshot(group, dir, 's3');
      // Its older points stay (by sequence number: right after s1 comes the gap of what was purged while it was away).
      await expectRestoresTo(repA, dir, s1, 'a-s1-again', 'seq');
      await expectRestoresTo(repA, dir, s3, 'a-s3');
    } finally {
      await primary.stop();
      await a.stop();
      await b?.stop();
      await group.close();
    }
  }, 90_000);
});
