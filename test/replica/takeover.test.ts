import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { isJshipError } from '../../src/core/errors.js';
import { groupPaths } from '../../src/journal/group-files.js';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { LinkPrimary } from '../../src/link/link-primary.js';
import { readLinkKey } from '../../src/link/link-tls.js';
import { runPull } from '../../src/link/link-secondary.js';
import { parseHostPort } from '../../src/io/sockets.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { importTapes } from '../../src/replica/import.js';
import { promoteReplica } from '../../src/replica/promote.js';
import { demoteGroup } from '../../src/link/demote.js';
import { runExport } from '../../src/tape/export-request.js';
import { Replica } from '../../src/replica/replica.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { buildTimeline } from '../../src/replica/timeline.js';
import { KiB, MiB, jshipJson, tempDir } from '../helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';
import { events, linkedGroup, snapshot } from '../link/helpers.js';

type Snap = Awaited<ReturnType<typeof snapshot>>;

/** Restores `marker` at `replica` into files and compares them with the PVOL images captured at it. */
async function expectMarker(replica: string, dir: string, marker: string, snap: Snap, tag: string): Promise<void> {
  const out = join(dir, `restored-${tag}`);
  await restoreReplica(replica, { point: { kind: 'marker', name: marker }, targets: [{ path: `${out}/` }] });
  for (const [name, file] of Object.entries(snap.files)) {
    expect(readFileSync(join(out, `${name}.img`)).equals(readFileSync(file)), `${tag}: volume ${name} at ${marker}`).toBe(true);
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isJshipError(e) ? e.code : `not a jship error: ${(e as Error).message}`;
  }
  return 'no error';
}

describe('takeover (issue 15): promote a secondary, a third site follows it, the old primary is fenced', () => {
  const dir = tempDir();

  it('B is promoted at its latest point; C follows B by link without a new base and by tapes; every marker of both epochs restores exactly; A restarted is fenced', async () => {
    const { g: gA, group: A0, key } = await linkedGroup(dir, { a: 16 * MiB, b: 1 * MiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    const volumeBytes = 17 * MiB;
    let A: JournalGroup = A0;
    const ev = events();
    const repB = join(dir, 'repB');
    const repC = join(dir, 'repC');
    const tapesA = join(dir, 'tapesA');
    const snaps: Record<string, Snap> = {};
    let primaryA = await LinkPrimary.start(A, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log, maxTapeBytes: 64 * KiB });
    const fromA = parseHostPort(primaryA.address as string, '--from');
    // Epoch 1: B follows A over the link, C by tapes.
    await writeMixed(A, 40, 1);
    await A.mark('m1');
    snaps.m1 = await snapshot(A, dir, 'm1');
    await exportTo(A, tapesA, { base: true });
    await runPull({ replicaDir: repB, name: 'site-b', key, log: ev.log, from: fromA, once: true });
    await writeMixed(A, 30, 2);
    await A.mark('m2');
    snaps.m2 = await snapshot(A, dir, 'm2');
    await runPull({ replicaDir: repB, name: 'site-b', key, log: ev.log, from: fromA, once: true });
    await exportTo(A, tapesA);
    expect((await importTapes(repC, [tapesA])).ok).toBe(true);
    // The split-brain window: A takes writes that reach no one before it goes down.
    await writeMixed(A, 10, 3);
    const lostFrom = A.journal.writtenSeq - 10n;
    await primaryA.stop();
    await A.close();

    // Promotion refusals first: a recent primary needs --force; a directory holding a group is refused.
    const gB = join(dir, 'groupB');
    expect(await code(promoteReplica(repB, { to: gB, point: { kind: 'latest' }, journalSize: 16 * MiB }))).toBe('PROMOTE_REFUSED');
    expect(await code(promoteReplica(repB, { to: gA, point: { kind: 'latest' }, journalSize: 16 * MiB, force: true }))).toBe('GROUP_EXISTS');
    expect(existsSync(gB)).toBe(false);
    const linkKey = readFileSync(groupPaths(gA).linkKey, 'utf8');
    const pr = await promoteReplica(repB, { to: gB, point: { kind: 'latest' }, journalSize: 16 * MiB, chunkSize: 64 * KiB, force: true, linkKey, ackKey: readFileSync(groupPaths(gA).ackKey, 'utf8') });
    expect(pr.point.seq).toBe(snaps.m2.seq);
    expect(pr.epoch).toEqual({ generation: 2, startSeq: snaps.m2.seq + 1n });
    expect(pr.forced).toBe(true);
    expect(pr.newKeys).toEqual([]);
    // The SVOLs are the PVOLs now: a restore into them is refused; a promotion again too.
    expect(await code(restoreReplica(repB, { point: { kind: 'latest' } }))).toBe('REPLICA_PROMOTED');
    expect(await code(promoteReplica(repB, { to: join(dir, 'again'), point: { kind: 'latest' }, journalSize: 16 * MiB, force: true }))).toBe('REPLICA_PROMOTED');

    // Epoch 2 at B: same group, the sequence continues; its first record is the promotion marker.
    const B = await openSiteGroup(gB);
    expect(B.config.groupId).toBe(A.config.groupId);
    expect(B.journal.outSeq).toBe(snaps.m2.seq + 1n);
    const first = await B.journal.readRecords(snaps.m2.seq + 1n, 1);
    expect(JSON.parse(Buffer.from(first[0]!.data).toString('utf8'))).toMatchObject({ kind: 'promoted', generation: 2, fromSeq: String(snaps.m2.seq), forced: true });
    const primaryB = await LinkPrimary.start(B, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log, maxTapeBytes: 64 * KiB });
    try {
      const fromB = parseHostPort(primaryB.address as string, '--from');
      // C follows B over the link from where its tapes of epoch 1 end: no base.
      await writeMixed(B, 30, 4);
      await B.mark('m3');
      snaps.m3 = await snapshot(B, dir, 'm3');
      const got = events();
      await runPull({ replicaDir: repC, name: 'site-c', key, log: got.log, from: fromB, once: true });
      const toC = ev.all.filter((e) => e.event === 'tape-confirmed' && e.name === 'site-c');
      expect(toC.length).toBeGreaterThan(0);
      expect(toC.every((e) => e.base === null)).toBe(true);
      // And by tapes: B's tape chain of epoch 2 starts at serial 1, named apart from epoch 1's.
      const tapesB = join(dir, 'tapesB');
      await writeMixed(B, 20, 5);
      await B.mark('m4');
      snaps.m4 = await snapshot(B, dir, 'm4');
      const ex = await exportTo(B, tapesB);
      expect(ex.tapes[0]!.serial).toBe(1);
      expect(readdirSync(tapesB).filter((f) => f.endsWith('.tar.zst')).every((f) => f.endsWith('-e2.tar.zst'))).toBe(true);
      const imp = await importTapes(repC, [tapesB]);
      expect(imp.ok).toBe(true);
      await runPull({ replicaDir: repC, name: 'site-c', key, log: got.log, from: fromB, once: true });
      for (const m of ['m1', 'm2', 'm3', 'm4']) await expectMarker(repC, dir, m, snaps[m]!, `c-${m}`);
      // B's own replica still restores epoch 1 into files (it joined after m1: its base came later).
      await expectMarker(repB, dir, 'm2', snaps.m2, 'b-m2');
      // The timeline shows where the epoch changed.
      const r = await Replica.open(repC);
      try {
        const t = buildTimeline(r.catalog);
        expect(t.markers.find((m) => m.kind === 'promoted')?.seq).toBe(snaps.m2.seq + 1n);
        expect(r.catalog.lineage()).toEqual([{ generation: 2, startSeq: String(snaps.m2.seq + 1n) }]);
      } finally {
        await r.close();
      }

      // A comes back: writes are still allowed until it hears of epoch 2 ...
      A = await openSiteGroup(gA);
      primaryA = await LinkPrimary.start(A, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log });
      const fromA2 = parseHostPort(primaryA.address as string, '--from');
      // ... from C, which follows epoch 2: A fences itself and refuses it.
      const refused = await code(runPull({ replicaDir: repC, name: 'site-c', key, log: got.log, from: fromA2, once: true }));
      expect(refused).toBe('LINK_REFUSED');
      expect(A.fence?.epochs).toEqual([{ generation: 2, startSeq: String(snaps.m2.seq + 1n) }]);
      expect(await code(A.write('a', 0, Buffer.alloc(4096, 7)))).toBe('GROUP_FENCED');
      expect(await code(A.mark('after'))).toBe('GROUP_FENCED');
      // A's records after the takeover point (the split-brain window) never join a replica of epoch 2.
      const tapesA2 = join(dir, 'tapesA2');
      mkdirSync(tapesA2);
      const late = await exportTo(A, tapesA2);
      expect(late.tapes.length).toBeGreaterThan(0);
      const lateImport = await importTapes(repC, [tapesA2]);
      expect(lateImport.ok).toBe(false);
      expect(lateImport.tapes.map((t) => t.code)).toContain('TAPE_DIVERGED');
      expect(lostFrom).toBeGreaterThan(snaps.m2.seq);
      await primaryA.stop();
      await A.close();
      // Fenced for good: reopened, A still refuses writes.
      A = await openSiteGroup(gA);
      expect(await code(A.write('a', 0, Buffer.alloc(4096, 7)))).toBe('GROUP_FENCED');
      await A.close();
      // The CLI says so.
      const st = jshipJson('status', gA);
      expect(st.out.fenced.epochs).toEqual([{ generation: 2, startSeq: Number(snaps.m2.seq + 1n) }]);

      // Failback, step 1: A becomes a secondary of B and gets only the chunks that differ.
      await writeMixed(B, 10, 6);
      const demoted = await demoteGroup(gA, { from: fromB, key, name: 'site-a', log: ev.log });
      expect(demoted.takeoverSeq).toBe(snaps.m2.seq);
      expect(demoted.diverged.records).toBeGreaterThan(0);
      expect(existsSync(demoted.diverged.tape!)).toBe(true);
      expect(demoted.applied?.proved).toBe(true);
      const resync = ev.all.find((e) => e.event === 'resync' && e.name === 'site-a') as unknown as { chunks: number; chunkSize: number };
      const sent = ev.all.filter((e) => e.event === 'tape-confirmed' && e.name === 'site-a') as unknown as Array<{ base: { scope: string } | null; bytes: number }>;
      expect(sent[0]?.base?.scope).toBe('resync');
      // The bytes shipped: the divergent and new chunks, not the volumes.
      expect(resync.chunks * resync.chunkSize).toBeLessThan(volumeBytes / 2);
      expect(sent.reduce((n, t) => n + t.bytes, 0)).toBeLessThan(volumeBytes / 2);
      // A's volume files are B's volumes now, byte for byte (B is idle).
      await B.flush();
      for (const v of B.volumes) expect(readFileSync(join(dir, `${v.name}.img`)).equals(readFileSync(v.extents[0]!.path)), `volume ${v.name}`).toBe(true);
      // The demoted group is not opened again; its replica follows B.
      expect(await code(openSiteGroup(gA))).toBe('GROUP_DEMOTED');
      // Its status says what it is now: a secondary of epoch 2, its volumes at the applied point.
      const ds = jshipJson('status', gA);
      expect(ds).toExit(0);
      expect(ds.out).toMatchObject({ role: 'secondary', epoch: { generation: 2, startSeq: Number(snaps.m2.seq + 1n) }, takeoverSeq: Number(snaps.m2.seq), diverged: { records: demoted.diverged.records }, replica: { dir: join(gA, 'replica'), appliedSeq: Number(demoted.applied?.seq) } });
      await writeMixed(B, 10, 7);
      await B.mark('m5');
      snaps.m5 = await snapshot(B, dir, 'm5');
      const repA = join(gA, 'replica');
      await runPull({ replicaDir: repA, name: 'site-a', key, log: ev.log, from: fromB, once: true });
      await runPull({ replicaDir: repC, name: 'site-c', key, log: got.log, from: fromB, once: true });

      // Failback, step 2 (planned): B's writers stop, A catches up, A is promoted, B follows A.
      await primaryB.stop();
      await B.close();
      const gA3 = join(dir, 'groupA3');
      const back = await promoteReplica(repA, { to: gA3, point: { kind: 'latest' }, journalSize: 16 * MiB, chunkSize: 64 * KiB, force: true, linkKey, ackKey: readFileSync(groupPaths(gA).ackKey, 'utf8') });
      expect(back.epoch.generation).toBe(3);
      expect(back.point.seq).toBe(snaps.m5.seq);
      const A3 = await openSiteGroup(gA3);
      const primaryA3 = await LinkPrimary.start(A3, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log, maxTapeBytes: 64 * KiB });
      try {
        const fromA3 = parseHostPort(primaryA3.address as string, '--from');
        // C follows A into epoch 3 without a new base (registered before anything is purged at A).
        const before = ev.all.length;
        await runPull({ replicaDir: repC, name: 'site-c', key, log: got.log, from: fromA3, once: true });
        await writeMixed(A3, 10, 8);
        const bDemoted = await demoteGroup(gB, { from: fromA3, key, name: 'site-b', log: ev.log });
        expect(bDemoted.diverged.records).toBe(0);
        expect(bDemoted.applied?.proved).toBe(true);
        await writeMixed(A3, 10, 9);
        await A3.mark('m6');
        snaps.m6 = await snapshot(A3, dir, 'm6');
        // Every marker of the three epochs restores at C.
        await runPull({ replicaDir: repC, name: 'site-c', key, log: got.log, from: fromA3, once: true });
        expect(ev.all.slice(before).filter((e) => e.event === 'tape-confirmed' && e.name === 'site-c').every((e) => e.base === null)).toBe(true);
        for (const m of ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']) await expectMarker(repC, dir, m, snaps[m]!, `c3-${m}`);
        await runPull({ replicaDir: join(gB, 'replica'), name: 'site-b', key, log: ev.log, from: fromA3, once: true });
        // B's volumes (its SVOLs now) move forward to m6; a restore into files needs a full base there (it has a resync base only).
        await restoreReplica(join(gB, 'replica'), { point: { kind: 'marker', name: 'm6' } });
        for (const [name, file] of Object.entries(snaps.m6.files)) expect(readFileSync(join(repB, 'svol', `${name}.img`)).equals(readFileSync(file)), `B's ${name} at m6`).toBe(true);
        expect(await code(restoreReplica(join(gB, 'replica'), { point: { kind: 'marker', name: 'm6' }, targets: [{ path: `${join(dir, 'b-files')}/` }] }))).toBe('RESTORE_REFUSED');
      } finally {
        await primaryA3.stop();
        await A3.close();
      }
    } finally {
      await primaryB.stop().catch(() => undefined);
      await B.close().catch(() => undefined);
    }
  }, 180_000);

  it('refuses: a point after a gap, a replica that holds records of the old primary after the takeover, tapes of another promotion', async () => {
    const d = join(dir, 'refusals');
    const { g, group } = await linkedGroup(d, { a: 256 * KiB }, { journalSize: 8 * MiB, chunkSize: 64 * KiB });
    const tapes = join(d, 'tapes');
    await writeMixed(group, 10, 1);
    await exportTo(group, tapes, { base: true });
    await writeMixed(group, 10, 2);
    const t2 = await exportTo(group, tapes);
    await writeMixed(group, 10, 3);
    await group.mark('late');
    await exportTo(group, tapes);
    await group.close();
    const all = readdirSync(tapes).filter((f) => f.endsWith('.tar.zst')).sort();
    expect(all.length).toBe(3);
    // A replica missing tape 2: the latest point is before the gap; a point after it is refused.
    const gappy = join(d, 'gappy');
    await importTapes(gappy, [join(tapes, all[0]!), join(tapes, all[2]!)]);
    expect(await code(promoteReplica(gappy, { to: join(d, 'p1'), point: { kind: 'marker', name: 'late' }, journalSize: 4 * MiB, force: true }))).toBe('RESTORE_REFUSED');
    expect(existsSync(join(d, 'p1'))).toBe(false);
    // r2 promoted at the end of tape 2, though it holds tape 3: tape 3 is the old primary's after that point.
    const r2 = join(d, 'r2');
    await importTapes(r2, [join(tapes, all[0]!), join(tapes, all[1]!), join(tapes, all[2]!)]);
    const end2 = BigInt(t2.tapes[0]!.trailer.updates!.lastSeq);
    const p2 = await promoteReplica(r2, { to: join(d, 'p2'), point: { kind: 'seq', seq: end2 }, journalSize: 4 * MiB, force: true });
    expect(p2.epoch).toEqual({ generation: 2, startSeq: end2 + 1n });
    const G2 = await openSiteGroup(join(d, 'p2'));
    const tapes2 = join(d, 'tapes2');
    await exportTo(G2, tapes2);
    await G2.close();
    // A replica that holds tape 3 (records of epoch 1 after p2's takeover point) cannot follow p2.
    const r3 = join(d, 'r3');
    await importTapes(r3, [join(tapes, all[0]!), join(tapes, all[1]!), join(tapes, all[2]!)]);
    const div = await importTapes(r3, [tapes2]);
    expect(div.tapes.map((t) => t.code)).toEqual(['REPLICA_DIVERGED']);
    // A replica of epoch 1 up to tape 2 follows it.
    const r4 = join(d, 'r4');
    await importTapes(r4, [join(tapes, all[0]!), join(tapes, all[1]!)]);
    expect((await importTapes(r4, [tapes2])).ok).toBe(true);
    // A replica promoted at another point (one record earlier): p2's tapes descend from another promotion.
    const fork = join(d, 'fork');
    await importTapes(fork, [join(tapes, all[0]!), join(tapes, all[1]!)]);
    await promoteReplica(fork, { to: join(d, 'pf'), point: { kind: 'seq', seq: end2 - 1n }, journalSize: 4 * MiB, force: true });
    const forked = await importTapes(fork, [tapes2]);
    expect(forked.tapes.map((t) => t.code)).toEqual(['TAPE_DIVERGED']);
    // A group directory of the promoted site is refused as a promotion target.
    expect(await code(promoteReplica(r4, { to: g, point: { kind: 'latest' }, journalSize: 4 * MiB, force: true }))).toBe('GROUP_EXISTS');
  }, 120_000);

  it('demote refuses a group whose records after the takeover point were purged (then --full works); a replica of another group cannot follow the promoted site', async () => {
    const d = join(dir, 'demote-refusals');
    const { g: gA, group: A, key } = await linkedGroup(d, { a: 512 * KiB }, { journalSize: 8 * MiB, chunkSize: 64 * KiB });
    const tapes = join(d, 'tapes');
    const repB = join(d, 'repB');
    await writeMixed(A, 10, 1);
    await exportTo(A, tapes, { base: true });
    await writeMixed(A, 10, 2);
    await exportTo(A, tapes);
    expect((await importTapes(repB, [tapes])).ok).toBe(true);
    // The split-brain window reached a tape, and the tape chain (A's only consumer) let the journal go.
    await writeMixed(A, 10, 3);
    await exportTo(A, join(d, 'late'));
    const takeover = A.journal.writtenSeq - 11n;
    expect(A.journal.outSeq).toBeGreaterThan(takeover + 1n);
    await A.close();
    const gB = join(d, 'groupB');
    await promoteReplica(repB, { to: gB, point: { kind: 'latest' }, journalSize: 8 * MiB, chunkSize: 64 * KiB, force: true, linkKey: readFileSync(groupPaths(gA).linkKey, 'utf8') });
    const B = await openSiteGroup(gB);
    const ev = events();
    const primaryB = await LinkPrimary.start(B, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log });
    try {
      const fromB = parseHostPort(primaryB.address as string, '--from');
      await writeMixed(B, 10, 4);
      const volume = join(d, 'a.img');
      const before = readFileSync(volume);
      const refused = await demoteGroup(gA, { from: fromB, key, name: 'site-a', log: ev.log }).then(() => null, (e: unknown) => e);
      expect(isJshipError(refused) && refused.code).toBe('DEMOTE_REFUSED');
      expect((refused as Error).message).toMatch(/were purged from its journal/);
      expect((refused as { hint: string }).hint).toMatch(/--full.*The group is fenced now/);
      // Refused, A's volume is untouched and nothing is demoted, but A knows of epoch 2 now: it is fenced.
      expect(readFileSync(volume).equals(before)).toBe(true);
      expect(existsSync(groupPaths(gA).demoted)).toBe(false);
      expect(existsSync(join(gA, 'replica'))).toBe(false);
      const A2 = await openSiteGroup(gA);
      expect(A2.fence?.epochs).toEqual([{ generation: 2, startSeq: String(takeover + 1n) }]);
      await A2.close();
      // With --full, A gets a full base: its volume is B's.
      const full = await demoteGroup(gA, { from: fromB, key, name: 'site-a', log: ev.log, full: true });
      expect(full.full).toBe(true);
      expect(full.applied?.proved).toBe(true);
      await B.flush();
      expect(readFileSync(volume).equals(readFileSync(B.volumes[0]!.extents[0]!.path))).toBe(true);

      // A replica of another group, given B's key, is refused by B: it names both groups.
      const { g: gO, group: O } = await linkedGroup(join(d, 'other'), { a: 256 * KiB }, { journalSize: 4 * MiB, chunkSize: 64 * KiB });
      await writeMixed(O, 5, 5);
      const repO = join(d, 'repO');
      const keyO = await readLinkKey(groupPaths(gO).linkKey);
      const primaryO = await LinkPrimary.start(O, { listen: { host: '127.0.0.1', port: 0 }, key: keyO, log: ev.log });
      try {
        await runPull({ replicaDir: repO, name: 'site-o', key: keyO, log: ev.log, from: parseHostPort(primaryO.address as string, '--from'), once: true });
      } finally {
        await primaryO.stop();
        await O.close();
      }
      const other = await runPull({ replicaDir: repO, name: 'site-o', key, log: ev.log, from: fromB, once: true }).then(() => null, (e: unknown) => e);
      expect(isJshipError(other) ? `${other.code}: ${other.message}` : String(other)).toMatch(/^LINK_AUTH: .*another group/);
    } finally {
      await primaryB.stop();
      await B.close();
    }
  }, 120_000);

  it('demote by tapes: the first run keeps the divergent writes and writes a resync request, touching no volume; the new primary exports a resync base for it (another request\'s base before it is not taken); the second run applies it, proved', async () => {
    const d = join(dir, 'by-tapes');
    const { g: gA, group: A } = await linkedGroup(d, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 8 * MiB, chunkSize: 64 * KiB });
    const tapesA = join(d, 'tapesA');
    const repB = join(d, 'repB');
    await writeMixed(A, 20, 1);
    await exportTo(A, tapesA, { base: true });
    expect((await importTapes(repB, [tapesA])).ok).toBe(true);
    // The split-brain window: A's writes after the takeover point, in its journal only.
    await writeMixed(A, 8, 2);
    await A.close();
    const gB = join(d, 'groupB');
    await promoteReplica(repB, { to: gB, point: { kind: 'latest' }, journalSize: 8 * MiB, chunkSize: 64 * KiB, force: true });
    const B = await openSiteGroup(gB);
    try {
      await writeMixed(B, 12, 3);
      const tapesB = join(d, 'tapesB');
      await exportTo(B, tapesB);
      const volA = join(d, 'a.img');
      const before = readFileSync(volA);
      // First run: no resync base among B's tapes yet.
      const ev = events();
      const first = await demoteGroup(gA, { tapes: [tapesB], name: 'site-a', log: ev.log });
      expect(first.applied).toBe(null);
      expect(first.awaiting?.request).toBe(join(gA, 'resync-request.json'));
      expect(first.diverged.records).toBe(8);
      expect(existsSync(first.diverged.tape!)).toBe(true);
      expect(readFileSync(volA).equals(before)).toBe(true);
      const A2 = await code(openSiteGroup(gA));
      expect(A2).toBe('GROUP_DEMOTED');
      expect(jshipJson('status', gA).out).toMatchObject({ role: 'demoting', replica: { appliedSeq: null } });
      // While another command holds the demoted group's replica (an import, a restore), status still answers
      // (it failed, GROUP_LOCKED: a false alarm), and demote --wait waits, then fails (it was an unknown option).
      const heldReplica = await Replica.open(join(gA, 'replica'));
      try {
        expect(jshipJson('status', gA)).toMatchObject({ code: 0, out: { role: 'demoting' } });
        const again = jshipJson('demote', gA, '--follow', tapesB, '--wait', '1s');
        expect(again.code, JSON.stringify(again.out)).toBe(1);
        expect(again.out.error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining('still after 1 s') });
        expect(again.stderr).toMatch(/jship demote: .* is in use by process \d+ .*; waiting up to 1 s/);
      } finally {
        await heldReplica.close();
      }
      // At B: a request of another group, or naming another takeover point, is refused; nothing is exported.
      const req = JSON.parse(readFileSync(first.awaiting!.request!, 'utf8')) as { format: number; groupId: string; request: { id: string; fromSeq: string; volumes: unknown[] } };
      const tapesB2 = join(d, 'tapesB2');
      const forged = join(d, 'forged.json');
      writeFileSync(forged, JSON.stringify({ ...req, groupId: '00000000-0000-4000-8000-000000000000' }));
      expect(await code(runExport(B, { to: `${tapesB2}/`, resyncFor: forged }))).toBe('DEMOTE_REFUSED');
      writeFileSync(forged, JSON.stringify({ ...req, request: { ...req.request, fromSeq: String(BigInt(req.request.fromSeq) - 1n) } }));
      expect(await code(runExport(B, { to: `${tapesB2}/`, resyncFor: forged }))).toBe('DEMOTE_REFUSED');
      expect(existsSync(tapesB2) ? readdirSync(tapesB2).filter((f) => f.endsWith('.tar.zst')) : []).toEqual([]);
      // Another request's resync base goes first on B's chain (none of A's chunks): A must not take it.
      const decoy = join(d, 'decoy.json');
      writeFileSync(decoy, JSON.stringify({ ...req, request: { ...req.request, id: randomUUID(), volumes: req.request.volumes.map(() => []) } }));
      await runExport(B, { to: `${tapesB2}/`, resyncFor: decoy });
      await writeMixed(B, 5, 4);
      const ex = await runExport(B, { to: `${tapesB2}/`, resyncFor: first.awaiting!.request! });
      expect(ex.base?.scope).toBe('resync');
      // Second run: the tapes hold A's base; applied and proved. A's own divergent tape put among them is refused, and said.
      copyFileSync(first.diverged.tape!, join(tapesB2, basename(first.diverged.tape!)));
      const second = await demoteGroup(gA, { tapes: [tapesB2], name: 'site-a', log: ev.log });
      expect(second.resumed).toBe(true);
      expect(second.applied?.proved).toBe(true);
      expect(second.refused.map((t) => t.code)).toEqual(['TAPE_DIVERGED']);
      await B.flush();
      for (const v of B.volumes) expect(readFileSync(join(d, `${v.name}.img`)).equals(readFileSync(v.extents[0]!.path)), `volume ${v.name}`).toBe(true);
      expect(jshipJson('status', gA).out).toMatchObject({ role: 'secondary' });
    } finally {
      await B.close();
    }
  }, 120_000);
});
