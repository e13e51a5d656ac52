import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir, makeGroup, MiB, nextMillisecond } from '../helpers.js';
import { writeMixed } from '../tape/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

const root = new URL('../../', import.meta.url).pathname;


describe('samples', () => {
  const dir = tempDir();

  it('nightly-export.sh exports, verifies and logs; restore-to-timestamp.sh restores', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const group = await openSiteGroup(g);
    await writeMixed(group, 50, 1);
    await group.close();
    mkdirSync(join(dir, 'mnt'));
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'jship'), `#!/bin/sh\nexec ${process.execPath} ${join(root, 'bin/jship')} "$@"\n`, { mode: 0o755 });
    const env = { ...process.env, JSHIP: join(bin, 'jship') };
    const log = join(dir, 'export.log');
    // A base first (the script takes one on Sundays; here by hand), then the nightly run.
    const base = spawnSync(join(bin, 'jship'), ['export', g, '--to', join(dir, 'mnt', 'jship', JSON.parse(readFileSync(join(g, 'group.json'), 'utf8')).groupId) + '/', '--base'], { env });
    expect(base).toExit(0);
    // A time between the base and the next writes (a millisecond apart from both: the script takes ISO times), and the volume then.
    await nextMillisecond();
    const mid = new Date().toISOString();
    const atMid = readFileSync(join(dir, 'a.img'));
    await nextMillisecond();
    const again = await openSiteGroup(g);
    await writeMixed(again, 20, 2);
    await again.close();
    // An existing directory that is not a mount point (the disk is not attached): nothing written, nothing purged.
    const before = JSON.parse(spawnSync(join(bin, 'jship'), ['status', g, '--json'], { env, encoding: 'utf8' }).stdout).journal;
    const unmounted = spawnSync(join(root, 'samples/nightly-export.sh'), [g, join(dir, 'mnt'), log], { env, encoding: 'utf8' });
    expect(unmounted).toExit(1);
    expect(readFileSync(log, 'utf8')).toMatch(/is not a mount point/);
    expect(JSON.parse(spawnSync(join(bin, 'jship'), ['status', g, '--json'], { env, encoding: 'utf8' }).stdout).journal).toEqual(before);
    // A jship that is not there (cron's PATH lacks where it was installed): a clear line in the log, exit 127.
    const missing = spawnSync(join(root, 'samples/nightly-export.sh'), [g, join(dir, 'mnt'), log], { env: { PATH: '/usr/bin:/bin', JSHIP: join(dir, 'no-such-jship') }, encoding: 'utf8' });
    expect(missing).toExit(127);
    expect(readFileSync(log, 'utf8')).toMatch(/not found in .*set JSHIP=/);
    // Under cron's environment (PATH=/usr/bin:/bin and little else) with the mount checked away for a plain directory.
    const r = spawnSync(join(root, 'samples/nightly-export.sh'), [g, join(dir, 'mnt'), log], { env: { PATH: '/usr/bin:/bin', HOME: dir, JSHIP: env.JSHIP, JSHIP_ALLOW_UNMOUNTED: '1' }, encoding: 'utf8' });
    expect(r.status, readFileSync(log, 'utf8')).toBe(0);
    expect(readFileSync(log, 'utf8')).toMatch(/done/);
    const id = JSON.parse(readFileSync(join(g, 'group.json'), 'utf8')).groupId as string;
    const tapes = join(dir, 'mnt', 'jship', id);
    expect(readdirSync(tapes).length).toBeGreaterThanOrEqual(2);
    const imp = spawnSync(join(bin, 'jship'), ['import', join(dir, 'rep'), tapes], { env });
    expect(imp).toExit(0);
    const at = new Date().toISOString();
    const rs = spawnSync(join(root, 'samples/restore-to-timestamp.sh'), [join(dir, 'rep'), at, join(dir, 'out')], { env, encoding: 'utf8' });
    // Now is after the last record: the dry run refuses and the script stops with it.
    expect(rs).toExit(1);
    expect(rs.stderr).toMatch(/after the last record/);
    // A time inside the history: the dry run shows the plan, the restore writes the volume as it was then.
    const ok = spawnSync(join(root, 'samples/restore-to-timestamp.sh'), [join(dir, 'rep'), mid, join(dir, 'out-mid')], { env, encoding: 'utf8' });
    expect(ok).toExit(0);
    expect(readFileSync(join(dir, 'out-mid', 'a.img')).equals(atMid)).toBe(true);
    expect(atMid.equals(readFileSync(join(dir, 'a.img')))).toBe(false);
    const latest = spawnSync(join(bin, 'jship'), ['restore', join(dir, 'rep'), '--target', join(dir, 'out/')], { env });
    expect(latest).toExit(0);
    expect(readFileSync(join(dir, 'out', 'a.img')).equals(readFileSync(join(dir, 'a.img')))).toBe(true);

    // check-cron: each line's command, run as cron would (sh, cron's PATH with jship on it): silent while all holds.
    const lines = readFileSync(join(root, 'samples/check-cron'), 'utf8').split('\n').filter((l) => /^[\d*]/.test(l));
    expect(lines).toHaveLength(2);
    const cron = (line: string, fill: (cmd: string) => string) => {
      const cmd = fill(line.split(/\s+/).slice(5).join(' ').replace('/srv/jship/prod', g).replace('/srv/replica/prod', join(dir, 'rep')));
      return spawnSync('/bin/sh', ['-c', cmd], { env: { PATH: `${bin}:/usr/bin:/bin`, HOME: dir }, encoding: 'utf8' });
    };
    for (const line of lines) expect(cron(line, (c) => c)).toMatchObject({ status: 0, stdout: '' });
    // A limit that does not hold: the output (for cron's mail) names it.
    const failing = cron(lines[1]!, (c) => c.replace('26h', '1ms'));
    expect(failing.stdout).toMatch(/^ok {4}catalogue readable.*\nFAIL {2}newest restorable point .* old \(at most 0\.0 s\)\n1 of 2 checks fail\n$/);
  });

  it('drill-fsck: a drill of a point whose ext4 is clean passes, one of a point with its superblock overwritten fails; both recorded', async () => {
    const img = join(dir, 'fs.img');
    expect(spawnSync('truncate', ['-s', '16M', img])).toExit(0);
    const mk = spawnSync('mkfs.ext4', ['-q', '-F', img], { encoding: 'utf8' });
    expect(mk).toExit(0);
    const g = await makeGroup(join(dir, 'fsck'), { root: 16 * MiB }, { journalSize: 64 * MiB });
    let group = await openSiteGroup(g);
    const fs = readFileSync(img);
    for (let o = 0; o < fs.length; o += MiB) await group.write('root', o, fs.subarray(o, o + MiB));
    await group.close();
    const jship = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin/jship'), ...args], { encoding: 'utf8' });
    expect(jship('export', g, '--to', `${join(dir, 'fsck-tapes')}/`, '--base')).toExit(0);
    group = await openSiteGroup(g);
    await group.mark('clean');
    await group.write('root', 1024, Buffer.alloc(1024, 0xee)); // the primary superblock
    await group.close();
    expect(jship('export', g, '--to', `${join(dir, 'fsck-tapes')}/`)).toExit(0);
    const rep = join(dir, 'fsck-rep');
    expect(jship('import', rep, join(dir, 'fsck-tapes'))).toExit(0);
    const ok = jship('drill', rep, '--marker', 'clean', '--exec', join(root, 'samples/drill-fsck'), '--timeout', '5m');
    expect(ok).toExit(0);
    expect(ok.stdout).toMatch(/passed/);
    const bad = jship('drill', rep, '--exec', join(root, 'samples/drill-fsck'), '--timeout', '5m', '--json');
    expect(bad).toExit(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, code: 1, output: expect.stringMatching(/ROOT: e2fsck found problems/) });
    expect(JSON.parse(jship('timeline', rep, '--json').stdout).drills.map((d: { ok: boolean }) => d.ok)).toEqual([true, false]);
  }, 120_000);
});
