import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { BIN, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { baseGroup, nextTape, tapeFiles } from './forge.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

describe('what the replica says is true', () => {
  const dir = tempDir();

  it('latest is the newest restorable point: a later base after a gap counts (item 1); a no-op restore says so (item 12)', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    const g = await baseGroup(p);
    await nextTape(g, join(p, 't'), 20, 2);
    await nextTape(g, join(p, 't'), 20, 3); // tape 3: lost in transport
    await nextTape(g, join(p, 't'), 20, 4, { base: true });
    await nextTape(g, join(p, 't'), 20, 5);
    const t = tapeFiles(join(p, 't'));
    const rep = join(dir, 'rep');
    await importTapes(rep, [t[0]!, t[1]!, t[3]!, t[4]!]);
    const r = jshipJson('restore', rep, '--target', join(dir, 'out/'));
    expect(r).toExit(0);
    expect(readFileSync(join(dir, 'out', 'a.img')).equals(readFileSync(join(p, 'a.img')))).toBe(true);
    expect(readFileSync(join(dir, 'out', 'b.img')).equals(readFileSync(join(p, 'b.img')))).toBe(true);
    // The SVOLs, twice: the second run has nothing to do and says so.
    expect(jshipJson('restore', rep)).toExit(0);
    const again = spawnSync(process.execPath, [BIN, 'restore', rep], { encoding: 'utf8' });
    expect(again).toExit(0);
    expect(again.stdout).toMatch(/already at seq \d+ .*nothing to do/);
    // Without a gap, "latest" names no gap.
    const whole = join(dir, 'whole');
    await importTapes(whole, t);
    expect(jshipJson('restore', whole, '--dry-run').out.plan.point).toMatch(/^latest \(seq \d+\)$/);
  });

  it('a catalogue lost while tapes are on disk is named, with the rebuild (item 4)', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    const rep = join(dir, 'rep');
    await importTapes(rep, tapeFiles(join(p, 't')));
    for (const f of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm']) rmSync(join(rep, f), { force: true });
    for (const args of [['restore', rep, '--dry-run'], ['timeline', rep], ['tapes', rep]]) {
      const r = jshipJson(...args);
      expect(r.code, args[0]).toBe(1);
      expect(r.out.error.code).toBe('REPLICA_BAD');
      expect(r.out.error.hint).toMatch(/jship catalog .* --rebuild/);
    }
    expect(jshipJson('catalog', rep, '--rebuild')).toExit(0);
    expect(jshipJson('restore', rep, '--dry-run')).toExit(0);
  });

  it('bad input is a usage error, not "this is unexpected" (item 11)', () => {
    for (const size of ['10X', '-1', '1e9']) {
      const r = jshipJson('init', join(dir, `g${size}`), '--volume', `a=${join(dir, 'x.img')}:${size}`, '--journal-size', '16M');
      expect(r.code, size).toBe(2);
      expect(r.out.error.code).toBe('BAD_SIZE');
    }
    const t = jshipJson('restore', dir, '--until', '@99999999999999999999');
    expect(t).toExit(2);
    expect(t.out.error.code).toBe('BAD_TIME');
    mkdirSync(join(dir, 'empty'));
    const v = jshipJson('verify', join(dir, 'empty'));
    expect(v).toExit(2);
    expect(v.out.error.message).toMatch(/no tapes/);
  });

  it('--media-size too small for the largest record is refused before anything is written, with a size that works (item 5)', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g);
    await group.write('a', 0, Buffer.alloc(4096, 1));
    await group.write('a', MiB, randomBytes(2 * MiB));
    await group.close();
    const to = join(dir, 'tapes');
    const small = jshipJson('export', g, '--to', `${to}/`, '--media-size', '1M');
    expect(small).toExit(2);
    expect(small.out.error.message).toMatch(/cannot hold the largest segment of this export \(a record of 2\.00 MiB/);
    expect(existsSync(to) ? readdirSync(to) : []).toEqual([]);
    const [, n, unit] = /at least ([\d.]+) ([KMG])iB/.exec(small.out.error.hint)!;
    const ok = jshipJson('export', g, '--to', `${to}/`, '--media-size', `${Math.ceil(Number(n))}${unit}`);
    expect(ok).toExit(0);
  });

  it('restored images are 0600 unless --mode says otherwise (item 9); so are tapes, their copies in a replica and the PVOLs init makes', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    const rep = join(dir, 'rep');
    await importTapes(rep, tapeFiles(join(p, 't')));
    // Tapes hold the volumes' bytes (unless encrypted): they were 0644, readable by every user of both sites.
    for (const f of [...tapeFiles(join(p, 't')), ...tapeFiles(join(rep, 'tapes'))]) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    expect(jshipJson('init', join(dir, 'made'), '--volume', `a=${join(dir, 'made.img')}:1M`, '--journal-size', '2M')).toExit(0);
    expect(statSync(join(dir, 'made.img')).mode & 0o777).toBe(0o600);
    expect(jshipJson('export', join(dir, 'made'), '--to', join(dir, 'made.tar.zst'), '--base')).toExit(0);
    expect(statSync(join(dir, 'made.tar.zst')).mode & 0o777).toBe(0o600);
    expect(jshipJson('restore', rep, '--target', join(dir, 'x/'))).toExit(0);
    expect(statSync(join(dir, 'x', 'a.img')).mode & 0o777).toBe(0o600);
    expect(jshipJson('restore', rep)).toExit(0);
    expect(statSync(join(rep, 'svol', 'a.img')).mode & 0o777).toBe(0o600);
    expect(jshipJson('restore', rep, '--target', join(dir, 'y/'), '--mode', '0640')).toExit(0);
    expect(statSync(join(dir, 'y', 'b.img')).mode & 0o777).toBe(0o640);
    expect(jshipJson('restore', rep, '--target', join(dir, 'z/'), '--mode', '999')).toExit(2);
  });

  it('import - takes a tape from standard input with the same checks (item 10)', async () => {
    const p = join(dir, 'p');
    mkdirSync(p);
    await baseGroup(p);
    await nextTape(join(p, 'group'), join(p, 't'), 20, 2);
    const [t1, t2] = tapeFiles(join(p, 't')) as [string, string];
    const rep = join(dir, 'rep');
    const pipe = (file: Buffer) => spawnSync(process.execPath, [BIN, 'import', rep, '-', '--json'], { input: file, encoding: 'utf8' });
    const one = pipe(readFileSync(t1));
    expect(one).toExit(0);
    expect(JSON.parse(one.stdout).tapes[0].outcome).toBe('imported');
    expect(JSON.parse(pipe(readFileSync(t1)).stdout).tapes[0].outcome).toBe('duplicate');
    const cut = readFileSync(t2);
    const partial = pipe(cut.subarray(0, Math.floor(cut.length * 0.7)));
    expect(partial).toExit(1);
    expect(JSON.parse(partial.stdout).tapes[0].outcome).toBe('partial');
    expect(JSON.parse(pipe(cut).stdout).tapes[0].outcome).toBe('replaced');
    const r = jshipJson('restore', rep, '--target', join(dir, 'out/'));
    expect(r).toExit(0);
    expect(readFileSync(join(dir, 'out', 'a.img')).equals(readFileSync(join(p, 'a.img')))).toBe(true);
  });
});
