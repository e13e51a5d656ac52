import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { BIN, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { client, serve, type Served } from '../nbd/helpers.js';
import { until } from '../link/helpers.js';

/**
 * The disaster-recovery cycle of issue 15 through the built CLI, with qemu-io
 * writing over NBD at every stage and qemu-img comparing every restore with
 * the volumes read from the primary at each marker.
 */
describe('disaster-recovery drill (CLI, NBD clients)', () => {
  const dir = tempDir();

  it('A primary, B and C secondaries → A killed → B promoted → C follows B with no new base → A restarted takes a split-brain write, then is fenced → A demoted gets only the differing chunks → A promoted back (planned) → B follows A; every marker restores exactly at C', async () => {
    const gA = await makeGroup(join(dir, 'A'), { a: 8 * MiB, b: 1 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * 1024 });
    const psk = groupPaths(gA).linkKey;
    const ackKey = groupPaths(gA).ackKey;
    const repB = join(dir, 'repB');
    const repC = join(dir, 'repC');
    const linkOf = (s: Served): string => (s.ready as any).link as string;
    const uris = (s: Served): string[] => s.ready.exports.map((e) => e.uri);
    const pull = (rep: string, name: string, from: string): ReturnType<typeof spawnSync> => spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', from, '--psk', psk, '--name', name, '--once', '--json'], { encoding: 'utf8' });
    const pulled = (rep: string, name: string, from: string): void => {
      const r = pull(rep, name, from);
      expect(r.status, String(r.stdout) + String(r.stderr)).toBe(0);
    };
    /** The volumes as the primary serves them now, read by qemu-img: what every site must restore at `tag`. */
    const capture = (s: Served, tag: string): void => {
      const [a, b] = uris(s);
      client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', a!, join(dir, `${tag}-a.raw`));
      client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', b!, join(dir, `${tag}-b.raw`));
    };
    const restoresAt = (rep: string, marker: string): void => {
      const out = join(dir, `r-${rep.split('/').pop()}-${marker}`);
      const r = jshipJson('restore', rep, '--marker', marker, '--target', `${out}/`);
      expect(r).toExit(0);
      expect(r.out.proof?.equal).toBe(true);
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(out, 'a.img'), join(dir, `${marker}-a.raw`));
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(out, 'b.img'), join(dir, `${marker}-b.raw`));
    };
    const mark = (g: string, name: string): void => expect(jshipJson('mark', g, name)).toExit(0);

    // Epoch 1: A serves; B and C follow over the link.
    let srvA = await serve(gA, '--link-listen', '127.0.0.1:0');
    pulled(repB, 'site-b', linkOf(srvA));
    pulled(repC, 'site-c', linkOf(srvA));
    let [a, b] = uris(srvA);
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x12 6M 64k', a!);
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x13 4k 8k', b!);
    mark(gA, 'm1');
    capture(srvA, 'm1');
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x21 512k 128k', '-c', 'write -z 6M 32k', a!);
    mark(gA, 'm2');
    capture(srvA, 'm2');
    pulled(repB, 'site-b', linkOf(srvA));
    pulled(repC, 'site-c', linkOf(srvA));
    // Written at A and never shipped: then A dies.
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x2f 2M 64k', a!);
    await srvA.stop('SIGKILL');

    // B is promoted: refused while A was heard from recently, then forced.
    const gB = join(dir, 'B');
    const promoteArgs = [repB, '--to', gB, '--journal-size', '32M', '--chunk-size', '64K', '--psk', psk, '--ack-key', ackKey];
    const notYet = jshipJson('promote', ...promoteArgs);
    expect(notYet).toExit(1);
    expect(notYet.out.error.code).toBe('PROMOTE_REFUSED');
    expect(existsSync(gB)).toBe(false);
    const promoted = jshipJson('promote', ...promoteArgs, '--force');
    expect(promoted).toExit(0);
    expect(promoted.out.epoch.generation).toBe(2);
    const srvB = await serve(gB, '--link-listen', '127.0.0.1:0');
    [a, b] = uris(srvB);
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x31 1M 64k', a!);
    mark(gB, 'm3');
    capture(srvB, 'm3');
    // C follows B where it was: no new base.
    pulled(repC, 'site-c', linkOf(srvB));
    const cTapes = jshipJson('tapes', repC).out.tapes as Array<{ chain: string; epoch?: number; baseId: number | null }>;
    expect(cTapes.filter((t) => t.epoch === 2).length).toBeGreaterThan(0);
    expect(cTapes.filter((t) => t.epoch === 2).every((t) => t.baseId === null)).toBe(true);

    // A comes back: until it hears of epoch 2 it takes writes (the split-brain window) ...
    srvA = await serve(gA, '--link-listen', '127.0.0.1:0');
    [a] = uris(srvA);
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x3f 3M 64k', a!);
    // ... C, following epoch 2, tells it: A fences itself, and writes fail from then on.
    const told = pull(repC, 'site-c', linkOf(srvA));
    expect(told).toExit(1);
    expect(String(told.stdout)).toMatch(/GROUP_FENCED/);
    const refused = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x40 0 4k', a!], { encoding: 'utf8' });
    expect(refused.stdout + refused.stderr).toMatch(/Operation not permitted/);
    expect(jshipJson('mark', gA, 'nope').out.error.code).toBe('GROUP_FENCED');
    expect(jshipJson('status', gA).out.fenced.epochs[0].generation).toBe(2);
    expect((await srvA.stop())).toExit(0);

    // Failback, step 1: A demoted; its writes after the takeover point kept on a tape, then overwritten.
    const demoted = jshipJson('demote', gA, '--follow', linkOf(srvB), '--name', 'site-a');
    expect(demoted).toExit(0);
    expect(demoted.out.diverged.records).toBe(2);
    expect(existsSync(demoted.out.diverged.tape)).toBe(true);
    expect(demoted.out.applied.proved).toBe(true);
    // Only the differing chunks: A's 2 divergent writes and B's 1, a few 64 KiB chunks of 9 MiB.
    // The server prints its events as they happen: wait for the ones of this session.
    await until('B to log the resync', () => /tape-confirmed name=site-a/.test(srvB.log()));
    const sent = srvB.log().split('\n').filter((l) => /tape-confirmed/.test(l) && /name=site-a/.test(l));
    expect(sent.length).toBeGreaterThan(0);
    const resyncLine = srvB.log().split('\n').find((l) => /\bresync\b/.test(l) && /name=site-a/.test(l)) ?? '';
    expect(Number(/chunks=(\d+)/.exec(resyncLine)?.[1])).toBeLessThanOrEqual(6);
    expect(jshipJson('status', gA).out).toMatchObject({ role: 'secondary', epoch: { generation: 2 } });
    expect(jshipJson('mark', gA, 'refused').out.error.code).toBe('GROUP_DEMOTED');
    client('qemu-io', '-f', 'raw', '-c', 'write -P 0x41 7M 64k', uris(srvB)[0]!);
    mark(gB, 'm4');
    capture(srvB, 'm4');
    pulled(join(gA, 'replica'), 'site-a', linkOf(srvB));
    pulled(repC, 'site-c', linkOf(srvB));

    // Failback, step 2 (planned): B's writers stop, A has caught up, A is promoted; B follows A.
    expect((await srvB.stop())).toExit(0);
    const gA3 = join(dir, 'A3');
    const back = jshipJson('promote', join(gA, 'replica'), '--to', gA3, '--journal-size', '32M', '--chunk-size', '64K', '--psk', psk, '--ack-key', ackKey, '--force');
    expect(back).toExit(0);
    expect(back.out.epoch.generation).toBe(3);
    const srvA3 = await serve(gA3, '--link-listen', '127.0.0.1:0');
    try {
      pulled(repC, 'site-c', linkOf(srvA3));
      [a, b] = uris(srvA3);
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x51 5M 64k', a!);
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x52 0 4k', b!);
      const bDemoted = jshipJson('demote', gB, '--follow', linkOf(srvA3), '--name', 'site-b');
      expect(bDemoted).toExit(0);
      expect(bDemoted.out.diverged.records).toBe(0);
      expect(bDemoted.out.applied.proved).toBe(true);
      mark(gA3, 'm5');
      capture(srvA3, 'm5');
      pulled(repC, 'site-c', linkOf(srvA3));
      for (const m of ['m1', 'm2', 'm3', 'm4', 'm5']) restoresAt(repC, m);
      // B's volumes, its SVOLs now, move forward to m5 too.
      pulled(join(gB, 'replica'), 'site-b', linkOf(srvA3));
      expect(jshipJson('restore', join(gB, 'replica'), '--marker', 'm5')).toExit(0);
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(repB, 'svol', 'a.img'), join(dir, 'm5-a.raw'));
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(repB, 'svol', 'b.img'), join(dir, 'm5-b.raw'));
      // The timeline at C shows both promotions.
      const tl = jshipJson('timeline', repC).out;
      expect(tl.markers.filter((m: { kind: string }) => m.kind === 'promoted').length).toBe(2);
    } finally {
      expect((await srvA3.stop())).toExit(0);
    }
    expect(readFileSync(join(dir, 'm5-a.raw')).length).toBe(8 * MiB);
  }, 300_000);
});
