import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Compressor, compress } from 'zstd-napi';
import { isJshipError } from '../../src/core/errors.js';
import { readKeyFile, KeyRing } from '../../src/tape/crypto.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { expireReplica } from '../../src/replica/expire.js';
import { importTapes } from '../../src/replica/import.js';
import { rebuildCatalog } from '../../src/replica/rebuild.js';
import { readReplicaState } from '../../src/replica/replica-state.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { BIN, jshipJson, tempDir } from '../helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';
import { baseGroup, cloneGroup, frames, nextTape, relabel, spliceFrame, tapeFiles } from './forge.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

const svol = (rep: string, v: string): Buffer => readFileSync(join(rep, 'svol', `${v}.img`));

/** The image of each volume at `seq` (or latest), restored from a replica of genuine tapes into files. */
async function model(dir: string, tapes: string[], seq?: bigint, key?: Awaited<ReturnType<typeof readKeyFile>>): Promise<{ a: Buffer; b: Buffer }> {
  const rep = join(dir, `model-${randomBytes(4).toString('hex')}`);
  await importTapes(rep, tapes, key ? { keys: new KeyRing([key]) } : {});
  const out = join(rep, 'out');
  await restoreReplica(rep, { point: seq === undefined ? { kind: 'latest' } : { kind: 'seq', seq }, targets: [{ path: `${out}/` }], ...(key ? { keys: new KeyRing([key]) } : {}) });
  return { a: readFileSync(join(out, 'a.img')), b: readFileSync(join(out, 'b.img')) };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isJshipError(e)) return e.code;
    throw e;
  }
  return 'none';
}

describe('a restore is byte-exact or refused (forged, spliced and damaged tapes)', () => {
  const dir = tempDir();

  it('A: a segment spliced in from a cloned group\'s tape is not kept; replacing a copy that differs rebuilds the SVOLs', async () => {
    const p = join(dir, 'p');
    const c = join(dir, 'c');
    mkdirSync(p);
    await baseGroup(p);
    cloneGroup(p, c);
    await nextTape(join(p, 'group'), join(p, 't'), 60, 7);
    await nextTape(join(c, 'group'), join(c, 't'), 60, 8); // same group id, same serial and seqs, other bytes
    const [p1, p2] = tapeFiles(join(p, 't')) as [string, string];
    const [, c2] = tapeFiles(join(c, 't')) as [string, string];
    const good = readFileSync(p2);
    expect(frames(good).length).toBeGreaterThan(4);
    const spliced = join(dir, 'spliced.tar.zst');
    writeFileSync(spliced, spliceFrame(good, 2, readFileSync(c2)));
    const [v] = await verifyTapes([spliced]);
    expect(v?.ok).toBe(false);
    expect(v?.error?.message).toMatch(/belongs to another tape/);

    const rep = join(dir, 'rep');
    const r = await importTapes(rep, [p1, spliced]);
    expect(r.tapes[1]?.outcome).toBe('partial');
    const kept = r.tapes[1]!.updates!;
    // What was kept is exactly the primary's: every point in it restores to the primary's image.
    for (const seq of [kept.firstSeq, kept.lastSeq]) {
      const want = await model(dir, [p1, p2], seq);
      await restoreReplica(rep, { point: { kind: 'seq', seq }, targets: [{ path: join(dir, `x${seq}/`) }] });
      expect(readFileSync(join(dir, `x${seq}`, 'a.img')).equals(want.a)).toBe(true);
      expect(readFileSync(join(dir, `x${seq}`, 'b.img')).equals(want.b)).toBe(true);
    }
    expect(await refusal(restoreReplica(rep, { point: { kind: 'seq', seq: kept.lastSeq + 1n }, dryRun: true, targets: [{ path: join(dir, 'y/') }] }))).toBe('RESTORE_REFUSED');

    // The clone's tape 2, cut short, enters a second replica; the SVOLs take its records; then the genuine tape 2 arrives.
    const rep2 = join(dir, 'rep2');
    const cut = join(dir, 'c2-cut.tar.zst');
    const cbuf = readFileSync(c2);
    const cf = frames(cbuf);
    writeFileSync(cut, cbuf.subarray(0, cf[cf.length - 3]![0]));
    const r2 = await importTapes(rep2, [p1, cut]);
    expect(r2.tapes[1]?.outcome).toBe('partial');
    await restoreReplica(rep2, { point: { kind: 'latest' } });
    const r3 = await importTapes(rep2, [p2]);
    expect(r3.tapes[0]?.outcome).toBe('replaced');
    expect(r3.tapes[0]?.message).toMatch(/rebuilt from the base/);
    await restoreReplica(rep2, { point: { kind: 'latest' } });
    const want = await model(dir, [p1, p2]);
    expect(svol(rep2, 'a').equals(want.a)).toBe(true);
    expect(svol(rep2, 'b').equals(want.b)).toBe(true);
  });

  it('B: import checks the chain against the tapes held; verify checks it per group', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    await nextTape(join(p, 'group'), join(p, 't'), 20, 2);
    await nextTape(join(p, 'group'), join(p, 't'), 20, 3);
    const [p1, p2, p3] = tapeFiles(join(p, 't')) as [string, string, string];
    const zeroed = join(dir, 'zeroed.tar.zst');
    writeFileSync(zeroed, await relabel(readFileSync(p2), (l) => ({ ...l, prevTapeSha256: '0'.repeat(64) })));
    const rep = join(dir, 'rep');
    const r = await importTapes(rep, [p1, zeroed]);
    expect(r.tapes[1]?.outcome).toBe('refused');
    expect(r.tapes[1]?.code).toBe('TAPE_CHAIN_BROKEN');
    // Arriving in the other order: the held tape names a predecessor this copy is not.
    const rep2 = join(dir, 'rep2');
    const other = join(dir, 'other');
    mkdirSync(other);
    await baseGroup(other);
    const r2 = await importTapes(rep2, [p3]);
    expect(r2.tapes[0]?.outcome).toBe('imported');
    const forged2 = join(dir, 'forged2.tar.zst');
    writeFileSync(forged2, await relabel(readFileSync(p2), (l) => ({ ...l, createdAt: '2020-01-01T00:00:00.000Z' })));
    expect((await importTapes(rep2, [forged2])).tapes[0]?.code).toBe('TAPE_CHAIN_BROKEN');
    expect((await importTapes(rep2, [p2, p1])).ok).toBe(true);

    // verify A1 B2 A3: the foreign tape and the gap are both named.
    const [b1] = tapeFiles(join(other, 't')) as [string];
    const b2 = join(dir, 'b2.tar.zst');
    writeFileSync(b2, await relabel(readFileSync(b1), (l) => ({ ...l, serial: 2, prevTapeSha256: 'a'.repeat(64) })));
    const vs = await verifyTapes([p1, b2, p3]);
    expect(vs[1]?.ok).toBe(false);
    expect(vs[1]?.chain.join(' ')).toMatch(/another group/);
    expect(vs[2]?.ok).toBe(false);
    expect(vs[2]?.chain.join(' ')).toMatch(/tapes 2\.\.2 of the chain are missing/);
    expect(jshipJson('verify', p1, b2, p3)).toExit(1);
  });

  it('C: --inconsistent never bridges a gap', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    for (let i = 0; i < 4; i++) await nextTape(join(p, 'group'), join(p, 't'), 20, 10 + i);
    const t = tapeFiles(join(p, 't'));
    const rep = join(dir, 'rep');
    await importTapes(rep, [t[0]!, t[1]!, t[3]!, t[4]!]); // tape 3 missing
    const last = (await importTapes(rep, [t[4]!])).tapes[0]!.updates!.lastSeq;
    const code = await refusal(restoreReplica(rep, { point: { kind: 'seq', seq: last }, inconsistent: true, targets: [{ path: join(dir, 'x/') }] }));
    expect(code).toBe('RESTORE_REFUSED');
    expect(existsSync(join(dir, 'x', 'a.img'))).toBe(false);
  });

  it('D: expire keeps what the SVOLs\' next restore needs, and says so', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    const g = await baseGroup(p);
    await nextTape(g, join(p, 't'), 20, 2);
    await nextTape(g, join(p, 't'), 20, 3);
    await nextTape(g, join(p, 't'), 20, 4, { base: true });
    await nextTape(g, join(p, 't'), 20, 5);
    const t = tapeFiles(join(p, 't'));
    const rep = join(dir, 'rep');
    const r = await importTapes(rep, t);
    await restoreReplica(rep, { point: { kind: 'seq', seq: r.tapes[1]!.updates!.firstSeq } });
    const e = await expireReplica(rep, { keepLast: 1 }, true);
    expect(e.keptForSvols.length).toBeGreaterThan(0);
    expect(e.reason).toMatch(/stay for the SVOLs/);
    await restoreReplica(rep, { point: { kind: 'latest' } });
    const want = await model(dir, t);
    expect(svol(rep, 'a').equals(want.a)).toBe(true);
    expect(svol(rep, 'b').equals(want.b)).toBe(true);
    // Once the SVOLs moved on, the old tapes go.
    const e2 = await expireReplica(rep, { keepLast: 1 }, true);
    expect(e2.keptForSvols).toEqual([]);
    expect(e2.remove.length).toBeGreaterThan(0);
  });

  it('E: a plaintext tape cannot enter an encrypted chain; export refuses to drop encryption unless told', async () => {
    writeFileSync(join(dir, 'k'), randomBytes(32));
    const key = await readKeyFile(join(dir, 'k'));
    const p = join(dir, 'p');
    const c = join(dir, 'c');
    mkdirSync(p);
    const g = await baseGroup(p, { key });
    cloneGroup(p, c);
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    await writeMixed(group, 10, 3);
    expect(await refusal(exportTo(group, join(p, 't')))).toBe('USAGE');
    await group.close();
    await nextTape(g, join(p, 't'), 10, 4, { key });
    await nextTape(join(c, 'group'), join(c, 't'), 30, 5, { allowPlaintext: true }); // injected bytes
    const [p1, p2] = tapeFiles(join(p, 't')) as [string, string];
    const [, c2] = tapeFiles(join(c, 't')) as [string, string];
    const rep = join(dir, 'rep');
    const r = await importTapes(rep, [p1, c2, p2], { keys: new KeyRing([key]) });
    expect(r.tapes.map((x) => x.outcome)).toEqual(['imported', 'refused', 'imported']);
    expect(r.tapes[1]?.code).toBe('TAPE_PLAINTEXT');
    await restoreReplica(rep, { point: { kind: 'latest' }, keys: new KeyRing([key]) });
    const want = await model(dir, [p1, p2], undefined, key);
    expect(svol(rep, 'a').equals(want.a)).toBe(true);
  });

  it('F: a refused tape changes nothing (a label with absurd sizes); labels are bounded; rebuild repairs the sizes', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    const [p1] = tapeFiles(join(p, 't')) as [string];
    const rep = join(dir, 'rep');
    await importTapes(rep, [p1]);
    const before = readFileSync(join(rep, 'replica.json'), 'utf8');
    const huge = await relabel(readFileSync(p1), (l) => ({ ...l, serial: 2, prevTapeSha256: null, volumes: l.volumes.map((v) => ({ ...v, size: 2 ** 50 })) }));
    const crafted = join(dir, 'crafted.tar.zst');
    writeFileSync(crafted, Buffer.concat([huge.subarray(0, frames(huge)[0]![1]), randomBytes(4096)]));
    const r = await importTapes(rep, [crafted]);
    expect(r.tapes[0]?.outcome).toBe('refused');
    expect(readFileSync(join(rep, 'replica.json'), 'utf8')).toBe(before);
    const tooBig = join(dir, 'too-big.tar.zst');
    writeFileSync(tooBig, await relabel(readFileSync(p1), (l) => ({ ...l, volumes: l.volumes.map((v) => ({ ...v, size: 2 ** 51 })) })));
    expect((await importTapes(rep, [tooBig])).tapes[0]?.code).toBe('TAPE_BAD_LABEL');
    // A replica.json grown by an older jship: catalog --rebuild takes the sizes from the stored tapes.
    const cfg = JSON.parse(before);
    writeFileSync(join(rep, 'replica.json'), JSON.stringify({ ...cfg, volumes: cfg.volumes.map((v: { name: string }) => ({ ...v, size: 2 ** 50 })) }));
    await rebuildCatalog(rep);
    expect(JSON.parse(readFileSync(join(rep, 'replica.json'), 'utf8')).volumes).toEqual(cfg.volumes);
    await restoreReplica(rep, { point: { kind: 'latest' } });
  });

  it('G: a frame that would expand past the format\'s limit is never decompressed', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    const [p1] = tapeFiles(join(p, 't')) as [string];
    const good = readFileSync(p1);
    const label = good.subarray(0, frames(good)[0]![1]);
    const bomb = join(dir, 'bomb.tar.zst');
    writeFileSync(bomb, Buffer.concat([label, compress(Buffer.alloc(80 * 1024 * 1024))]));
    const [v] = await verifyTapes([bomb]);
    expect(v?.ok).toBe(false);
    expect(v?.error?.message).toMatch(/declares 83886080 bytes of content, more than the format's/);
    const noSize = new Compressor();
    noSize.setParameters({ contentSizeFlag: false });
    const bomb2 = join(dir, 'bomb2.tar.zst');
    writeFileSync(bomb2, Buffer.concat([label, noSize.compress(Buffer.alloc(1024 * 1024))]));
    const [v2] = await verifyTapes([bomb2]);
    expect(v2?.error?.message).toMatch(/declares no content size/);
    const r = await importTapes(join(dir, 'rep'), [bomb]);
    expect(r.tapes[0]?.outcome).toBe('refused');
  });

  it('H: a restore into several files killed between its renames is finished by the same command', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    await nextTape(join(p, 'group'), join(p, 't'), 20, 2);
    const rep = join(dir, 'rep');
    await importTapes(rep, tapeFiles(join(p, 't')));
    const out = join(dir, 'out');
    mkdirSync(out);
    const args = ['restore', rep, '--target', `a=${join(out, 'a.img')}`, '--target', `b=${join(out, 'b.img')}`];
    // The kill comes from the kernel's side: strace delivers SIGKILL at the rename of b.img's temporary
    // file into place (strace -P matches a path that exists when it starts: a stale one stands in).
    const tmpB = join(out, '.b.img.jship-restore');
    writeFileSync(tmpB, 'stale');
    const killed = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-P', tmpB, '-e', 'trace=rename,renameat,renameat2', '-e', 'inject=rename,renameat,renameat2:signal=SIGKILL', process.execPath, BIN, ...args], { encoding: 'utf8' });
    expect(killed.signal ?? killed.status, killed.stderr).not.toBe(0);
    expect(existsSync(join(out, 'a.img'))).toBe(true);
    expect(existsSync(join(out, 'b.img'))).toBe(false);
    expect((await readReplicaState(rep)).renaming?.files.length).toBe(2);
    const rerun = jshipJson(...args);
    expect(rerun).toExit(0);
    expect(rerun.out.finishedInterrupted).toBe(true);
    const want = await model(dir, tapeFiles(join(p, 't')));
    expect(readFileSync(join(out, 'a.img')).equals(want.a)).toBe(true);
    expect(readFileSync(join(out, 'b.img')).equals(want.b)).toBe(true);
  });

  it('I: an SVOL changed outside jship (removed, written into, truncated) is rebuilt from the base, not brought forward', async () => {
    const p = join(dir, 'pi');
    mkdirSync(p);
    const g = await baseGroup(p);
    const t = join(p, 't');
    const rep = join(dir, 'rep-i');
    const restore = (): { code: number; out: any } => jshipJson('restore', rep);
    const next = async (seed: number): Promise<void> => {
      await nextTape(g, t, 10, seed);
      expect((await importTapes(rep, tapeFiles(t))).ok).toBe(true);
    };
    const exact = async (): Promise<void> => {
      const want = await model(dir, tapeFiles(t));
      expect(svol(rep, 'a').equals(want.a)).toBe(true);
      expect(svol(rep, 'b').equals(want.b)).toBe(true);
    };
    await importTapes(rep, tapeFiles(t));
    expect(restore()).toExit(0);
    // Untouched: brought forward from their point, as before.
    await next(2);
    const forward = restore();
    expect(forward).toExit(0);
    expect(forward.out.plan.incrementalFrom).not.toBeNull();
    expect(forward.out.svolsRebuilt).toBeUndefined();
    await exact();
    // Removed: before, a new file of zeros was brought forward (only the newest records in it), and reported restored.
    rmSync(join(rep, 'svol', 'a.img'));
    await next(3);
    const removed = restore();
    expect(removed).toExit(0);
    expect(removed.out.plan.incrementalFrom).toBeNull();
    expect(removed.out.svolsRebuilt).toMatch(/a\.img is missing/);
    await exact();
    // Written into (a file system on it mounted read-write for a look): before, "nothing to do".
    const fd = openSync(join(rep, 'svol', 'b.img'), 'r+');
    writeSync(fd, Buffer.from('written by someone else'), 0, 23, 4096);
    closeSync(fd);
    const written = restore();
    expect(written).toExit(0);
    expect(written.out.nothingToDo).toBeUndefined();
    expect(written.out.svolsRebuilt).toMatch(/b\.img was written after its restore, by something other than jship/);
    await exact();
    // Truncated: before, grown back with zeros and brought forward.
    truncateSync(join(rep, 'svol', 'a.img'), 4096);
    await next(4);
    const cut = restore();
    expect(cut).toExit(0);
    expect(cut.out.svolsRebuilt).toMatch(/a\.img changed size \(1048576 bytes when restored, 4096 now\)/);
    await exact();
    // Monitoring sees it before the next restore; and the human output says so.
    expect(jshipJson('timeline', rep).out.svol.changed).toBeNull();
    rmSync(join(rep, 'svol', 'b.img'));
    expect(jshipJson('timeline', rep).out.svol.changed).toMatch(/b\.img is missing/);
    const human = spawnSync(process.execPath, [BIN, 'restore', rep], { encoding: 'utf8' });
    expect(human).toExit(0);
    expect(human.stdout).toMatch(/rebuilt from the base, not brought forward: .*b\.img is missing/);
    await exact();
  });
});

