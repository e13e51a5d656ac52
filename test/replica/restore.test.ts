import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { tmpPathFor } from '../../src/replica/targets.js';
import { DirLock } from '../../src/io/dir-lock.js';
import { formatTime } from '../../src/core/time.js';
import { BIN, jshipJson, tempDir, makeGroup, MiB, KiB } from '../helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { Volume } from '../../src/volume/volume.js';

const bin = BIN;
const jship = jshipJson;

describe('restore refusals and targets', () => {
  const dir = tempDir();

  it('refuses points it cannot vouch for, naming what is covered', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB, existingFiles: true });
    const group = await openSiteGroup(g);
    await writeMixed(group, 40, 1);
    const early = await group.write('a', 0, Buffer.alloc(512, 1));
    await exportTo(group, join(dir, 't'), { base: true });
    await group.mark('after-base');
    await writeMixed(group, 20, 2);
    const mid = await group.write('a', 4096, Buffer.alloc(512, 2));
    await writeMixed(group, 20, 4);
    await exportTo(group, join(dir, 't')); // tape 2
    await writeMixed(group, 40, 3);
    const last = await group.write('b', 0, Buffer.alloc(512, 9));
    await exportTo(group, join(dir, 't')); // tape 3
    await group.close();
    const rep = join(dir, 'rep');
    // Tape 2 missing: a gap.
    const files = (await import('node:fs')).readdirSync(join(dir, 't')).sort().map((n) => join(dir, 't', n));
    await importTapes(rep, [files[0]!, files[2]!]);
    const before = jship('restore', rep, '--until', formatTime(early.timestamp), '--target', join(dir, 'x/'));
    expect(before).toExit(1);
    expect(before.out.error.code).toBe('RESTORE_REFUSED');
    expect(before.out.error.message).toMatch(/no complete base|before base/);
    const gap = jship('restore', rep, '--seq', String(mid.seq), '--dry-run');
    expect(gap).toExit(1);
    expect(gap.out.error.message).toMatch(/not in the replica \(it holds 1\.\.\d+, \d+\.\.\d+\)/);
    const beyond = jship('restore', rep, '--seq', String(last.seq - 5n), '--dry-run');
    expect(beyond).toExit(1);
    expect(beyond.out.error.message).toMatch(/needs records or base tapes the replica does not hold/);
    const after = jship('restore', rep, '--until', formatTime(last.timestamp + 1_000_000_000n), '--target', join(dir, 'x/'));
    expect(after).toExit(1);
    expect(after.out.error.message).toMatch(/after the last record/);
    expect(jship('restore', rep, '--until', '2026-11-24T23:00:00')).toExit(2);
    expect(jship('restore', rep, '--until', 'yesterday')).toExit(2);
    expect(jship('restore', rep, '--marker', 'nope').out.error.hint).toMatch(/no named restore points/);
    expect(jship('restore', rep, '--volume', 'a')).toExit(2);
    expect(jship('restore', rep, '--seq', '5', '--marker', 'x')).toExit(2);
    // Importing tape 2 closes the gap; then the SVOLs go forward and refuse going back.
    await importTapes(rep, [files[1]!]);
    expect(jship('restore', rep, '--marker', 'nope').out.error.hint).toMatch(/known restore points: after-base/);
    const fwd = jship('restore', rep);
    expect(fwd).toExit(0);
    expect(fwd.out.plan.seq).toBe(Number(last.seq));
    const back = jship('restore', rep, '--marker', 'after-base');
    expect(back).toExit(1);
    expect(back.out.error.hint).toMatch(/--target/);
    const tgt = jship('restore', rep, '--marker', 'after-base', '--target', join(dir, 'out/'));
    expect(tgt).toExit(0);
    expect(jship('restore', rep, '--marker', 'after-base', '--target', join(dir, 'out/')).out.error.code).toBe('TARGET_NOT_USABLE');
    expect(jship('restore', rep, '--marker', 'after-base', '--target', join(dir, 'out/'), '--force')).toExit(0);
    // Partial image before base complete, only when asked for, only into a target.
    const inc = jship('restore', rep, '--seq', String(early.seq + 1n), '--inconsistent', '--target', join(dir, 'inc/'));
    expect(inc).toExit(0);
    expect(inc.out.plan.inconsistent).toBe(true);
    const single = jship('restore', rep, '--volume', 'b', '--target', join(dir, 'b-only.img'));
    expect(single).toExit(0);
    expect(readFileSync(join(dir, 'b-only.img')).equals(readFileSync(join(dir, 'b.img')))).toBe(true);
    const tl = jship('timeline', rep);
    expect(tl).toExit(0);
    expect(tl.out.gaps).toEqual([]);
    expect(tl.out.svol.restoredSeq).toBe(Number(last.seq));
    // A damaged state file is named, not trusted.
    writeFileSync(join(rep, 'state.json'), '{"format":1,"svol":{"restoredSeq":"x"}}');
    const bad = jship('restore', rep);
    expect(bad).toExit(1);
    expect(bad.out.error.code).toBe('REPLICA_BAD');
    // It lists the files a restore may remove: a name that is not a restore's temporary file is not removed.
    const victim = join(dir, 'precious.img');
    writeFileSync(victim, 'keep me');
    writeFileSync(join(rep, 'state.json'), JSON.stringify({ format: 1, svol: { restoredSeq: '0', restoredTs: null, inProgress: null }, devices: {}, writing: [victim] }));
    const forged = jship('restore', rep, '--target', join(dir, 'forged/'));
    expect(forged).toExit(1);
    expect(forged.out.error).toMatchObject({ code: 'REPLICA_BAD', message: expect.stringContaining('not a restore\'s temporary file') });
    expect(readFileSync(victim, 'utf8')).toBe('keep me');
  });

  it('a restore into a file killed midway leaves nothing once any later restore from the replica has run, whatever its target', async () => {
    const g = await makeGroup(dir, { a: 48 * MiB }, { journalSize: 64 * MiB });
    const group = await openSiteGroup(g);
    for (let i = 0; i < 48; i++) await group.write('a', i * MiB, Buffer.alloc(MiB, (i * 37) & 0xff || 1));
    await exportTo(group, join(dir, 't'), { base: true });
    await group.close();
    const rep = join(dir, 'rep');
    await importTapes(rep, [join(dir, 't')]);
    mkdirSync(join(dir, 'first'));
    const child = spawn(process.execPath, [bin, 'restore', rep, '--target', join(dir, 'first', 'a.img')], { stdio: 'ignore' });
    let exitCode: number | null | undefined;
    const exited = new Promise((r) => child.on('exit', (c) => { exitCode = c; r(c); }));
    const listed = (): boolean => {
      try {
        return (JSON.parse(readFileSync(join(rep, 'state.json'), 'utf8')).writing ?? []).length > 0;
      } catch {
        return false;
      }
    };
    while (!listed() && exitCode === undefined) await new Promise((r) => setTimeout(r, 2));
    child.kill('SIGKILL');
    await exited;
    expect(exitCode).toBe(null);
    // Up to the volume's size, hidden by its dot: it stayed until a restore to that same path.
    expect(readdirSync(join(dir, 'first')).sort()).toEqual(['.a.img.jship-restore', '.a.img.jship-restore.lock']);
    const other = jship('restore', rep, '--target', join(dir, 'elsewhere.img'));
    expect(other).toExit(0);
    expect(readdirSync(join(dir, 'first'))).toEqual([]);
    expect(JSON.parse(readFileSync(join(rep, 'state.json'), 'utf8')).writing).toEqual([]);
    expect(readFileSync(join(dir, 'elsewhere.img')).equals(readFileSync(join(dir, 'a.img')))).toBe(true);
  });

  it('an SVOL restore killed midway converges when rerun', async () => {
    const g = await makeGroup(dir, { a: 48 * MiB }, { journalSize: 64 * MiB, chunkSize: 1 * MiB });
    const group = await openSiteGroup(g);
    for (let i = 0; i < 48; i++) await group.write('a', i * MiB, Buffer.alloc(MiB, (i * 37) & 0xff || 1));
    await exportTo(group, join(dir, 't'), { base: true });
    await writeMixed(group, 300, 5);
    await exportTo(group, join(dir, 't'));
    await group.close();
    await importTapes(join(dir, 'rep'), [join(dir, 't')]);
    const expected = readFileSync(join(dir, 'a.img'));
    for (let trial = 0; trial < 3; trial++) {
      const child = spawn(process.execPath, [bin, 'restore', join(dir, 'rep')], { stdio: 'ignore' });
      let exitCode: number | null | undefined;
      const exited = new Promise((r) => child.on('exit', (c) => { exitCode = c; r(c); }));
      // Killed once the restore has begun writing the SVOLs (state.json says so), trial by trial a little later.
      const inProgress = (): boolean => {
        try {
          return JSON.parse(readFileSync(join(dir, 'rep', 'state.json'), 'utf8')).svol.inProgress !== null;
        } catch {
          return false;
        }
      };
      while (!inProgress() && exitCode === undefined) await new Promise((r) => setTimeout(r, 2));
      for (let i = 0; i < trial * 2 && exitCode === undefined; i++) await new Promise((r) => setTimeout(r, 2));
      child.kill('SIGKILL');
      await exited;
      // The kill interrupted the restore: it had not finished (exit code null: killed), and the state says where it was.
      expect(exitCode).toBe(null);
      expect(inProgress()).toBe(true);
      expect(jship('timeline', join(dir, 'rep')).out.svol.inProgress).not.toBeNull();
      const rerun = jship('restore', join(dir, 'rep'));
      expect(rerun).toExit(0);
      expect(readFileSync(join(dir, 'rep', 'svol', 'a.img')).equals(expected)).toBe(true);
      writeFileSync(join(dir, 'rep', 'state.json'), JSON.stringify({ format: 1, svol: { restoredSeq: '0', restoredTs: null, inProgress: null }, devices: {} }));
    }
  });

  it('refuses targets that would give a volume another one\'s bytes, or overwrite the replica\'s own files', async () => {
    const d = join(dir, 'clash');
    const g = await makeGroup(d, { a: 1 * MiB, b: 1 * MiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    const group = await openSiteGroup(g);
    await group.write('a', 0, Buffer.alloc(64 * KiB, 0xaa));
    await group.write('b', 0, Buffer.alloc(64 * KiB, 0xbb));
    const mid = await group.write('a', 64 * KiB, Buffer.alloc(64 * KiB, 0xa1));
    await exportTo(group, join(d, 't'), { base: true });
    await group.close();
    const rep = join(d, 'rep');
    await importTapes(rep, [join(d, 't')]);
    const tape = join(rep, 'tapes', readdirSync(join(rep, 'tapes')).find((n) => n.endsWith('.tar.zst'))!);
    const tapeBytes = readFileSync(tape);
    // One file for two volumes, named alike or not. At a point without a digest nothing caught it: the file held
    // volume b, reported as volume a's too (exit 0); at a marker the proof blamed the replica's tapes.
    mkdirSync(join(d, 'out'));
    writeFileSync(join(d, 'out', 'old.img'), 'x');
    symlinkSync(join(d, 'out'), join(d, 'out-link'));
    for (const [a, b, force] of [
      ['same.img', 'same.img', false],
      ['out/x.img', './out/../out/x.img', false],
      ['out/x.img', 'out-link/x.img', false],
      ['out/old.img', 'out-link/old.img', true],
    ] as const) {
      const r = jship('restore', rep, '--seq', String(mid.seq - 1n), '--target', `a=${join(d, a)}`, '--target', `b=${join(d, b)}`, ...(force ? ['--force'] : []));
      expect(r.code, `${a} and ${b}`).toBe(2);
      expect(r.out.error.code).toBe('USAGE');
      expect(r.out.error.message).toMatch(/volumes a and b .*the same file/);
      expect(readdirSync(join(d, 'out')).sort()).toEqual(['old.img']);
    }
    // Targets among the replica's own files: a tape (it was replaced by the image, exit 0), an SVOL, the catalogue,
    // anything at the top of its directory. A directory of the operator's own inside it is fine.
    for (const t of [tape, join(rep, 'svol', 'a.img'), join(rep, 'catalog.db'), join(rep, 'a.img'), `${rep}/`, join(rep, 'tapes', 'new.img')]) {
      const r = jship('restore', rep, '--volume', 'a', '--target', t, '--force');
      expect(r.code, t).toBe(2);
      expect(r.out.error.code).toBe('USAGE');
      expect(r.out.error.message).toMatch(/among the replica's own files/);
    }
    expect(readFileSync(tape).equals(tapeBytes)).toBe(true);
    expect(jship('restore', rep, '--volume', 'a', '--target', `${join(rep, 'restored')}/`)).toExit(0);
    expect(readFileSync(join(rep, 'restored', 'a.img')).equals(readFileSync(join(d, 'a.img')))).toBe(true);
    // One file, two restores at once (from two replicas): the second removed the first's temporary file and
    // wrote its own there; the first's proof read the second's, and the second reported success with no file.
    const busy = join(d, 'busy.img');
    const theirs = await DirLock.acquire(`${tmpPathFor(busy)}.lock`, 'a restore in another process');
    try {
      writeFileSync(tmpPathFor(busy), 'being written');
      const r = jship('restore', rep, '--volume', 'a', '--target', busy);
      expect(r).toExit(1);
      expect(r.out.error.code).toBe('TARGET_NOT_USABLE');
      expect(r.out.error.message).toContain(`in use by process ${process.pid}`);
      expect(readFileSync(tmpPathFor(busy), 'utf8')).toBe('being written');
    } finally {
      await theirs.release();
    }
    // A volume file a group has open (the old primary's, at a failback): renamed over, the group went on writing
    // the file it replaced, and every write after the restore was lost with it.
    const live = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      const before = readFileSync(join(d, 'a.img'));
      const r = jship('restore', rep, '--volume', 'a', '--target', join(d, 'a.img'), '--force');
      expect(r).toExit(1);
      expect(r.out.error).toMatchObject({ code: 'TARGET_NOT_USABLE', message: expect.stringContaining(`is the volume of a group that process ${process.pid}`) });
      expect(readFileSync(join(d, 'a.img')).equals(before)).toBe(true);
      expect(readdirSync(d).filter((n) => n.startsWith('.a.img'))).toEqual([]);
    } finally {
      await live.close();
    }
    // Its lock gone, the leftover is a killed restore's: removed, and the restore goes through.
    expect(jship('restore', rep, '--volume', 'a', '--target', busy)).toExit(0);
    expect(readdirSync(d).filter((n) => n.startsWith('.busy'))).toEqual([]);
    const ok = jship('restore', rep, '--target', `a=${join(d, 'out', 'a.img')}`, '--target', `b=${join(d, 'out-link', 'b.img')}`);
    expect(ok).toExit(0);
    expect(readFileSync(join(d, 'out', 'a.img')).equals(readFileSync(join(d, 'a.img')))).toBe(true);
    expect(readFileSync(join(d, 'out', 'b.img')).equals(readFileSync(join(d, 'b.img')))).toBe(true);
    // An SVOL a group writes as its volume (a promoted or demoted group's file) is not restored into meanwhile.
    expect(jship('restore', rep, '--seq', String(mid.seq - 1n))).toExit(0);
    const svol = join(rep, 'svol', 'a.img');
    const svolBytes = readFileSync(svol);
    const serving = await Volume.open({ name: 'a', extents: [{ path: svol }] });
    try {
      const r = jship('restore', rep);
      expect(r).toExit(1);
      expect(r.out.error).toMatchObject({ code: 'TARGET_NOT_USABLE', message: expect.stringContaining(`SVOL ${svol} is in use by process ${process.pid}`), hint: expect.stringMatching(/stop it/) });
      expect(readFileSync(svol).equals(svolBytes)).toBe(true);
    } finally {
      await serving.close();
    }
    expect(jship('restore', rep)).toExit(0);
    expect(readFileSync(svol).equals(readFileSync(join(d, 'a.img')))).toBe(true);
  });
});
