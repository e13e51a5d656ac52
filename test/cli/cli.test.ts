import { spawn, spawnSync } from 'node:child_process';
import { existsSync, linkSync, readFileSync, symlinkSync, writeFileSync, openSync, writeSync, closeSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const BIN = fileURLToPath(new URL('../../bin/jship', import.meta.url));

function jship(...args: string[]): { code: number; stdout: string; stderr: string; json: any } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  let json: unknown;
  if (args.includes('--json')) json = JSON.parse(r.stdout);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

describe('jship init / status / mark', () => {
  const dir = tempDir();

  it('creates a group, reports its status and takes restore points', () => {
    const g = join(dir, 'g');
    const init = jship('init', g, '--volume', `db=${join(dir, 'db.img')}:4M`, '--volume', `vg=${join(dir, 'vg1.img')}:1M,${join(dir, 'vg2.img')}:1M`, '--journal-size', '2M', '--json');
    expect(init).toExit(0);
    expect(init.json.volumes.map((v: { name: string }) => v.name)).toEqual(['db', 'vg']);
    expect(init.json.policy.journalFull).toBe('block');
    expect(readFileSync(join(g, 'ack.key'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    const st = jship('status', g);
    expect(st).toExit(0);
    expect(st.stdout).toMatch(/state: active/);
    expect(st.stdout).toMatch(/vg\s+2\.00 MiB/);
    const m = jship('mark', g, 'before-upgrade', '--json');
    expect(m).toExit(0);
    expect(m.json.seq).toBe(1);
    expect(m.json.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    const again = jship('mark', g, 'before-upgrade');
    expect(again).toExit(1);
    expect(again.stderr).toMatch(/exists already/);
    expect(again.stderr).toMatch(/hint:/);
    const js = jship('status', g, '--json');
    expect(js.json.sequence).toEqual({ first: 1, last: 1 });
    expect(js.json.journal.records).toBe(1);
    expect(js.json.markers).toBe(1);
    expect(jship('mark', g, 'no spaces allowed')).toExit(2);
  });

  it('exits 2 on usage errors, with one JSON error object under --json', () => {
    const g = join(dir, 'g');
    expect(jship('init', g, '--volume', `a=${join(dir, 'a.img')}:1M`, '--journal-size', '10X')).toExit(2);
    expect(jship('init', g, '--volume', `a=${join(dir, 'a.img')}:1M`)).toExit(2);
    expect(jship('init', g, '--journal-size', '1M')).toExit(2);
    expect(jship('init', g, '--bogus')).toExit(2);
    expect(jship('frobnicate')).toExit(2);
    const r = jship('init', g, '--volume', 'bad', '--journal-size', '1M', '--json');
    expect(r).toExit(2);
    expect(r.json.error.code).toBe('BAD_VOLUME_SPEC');
    expect(r.json.error.hint).toBeTruthy();
    const u = jship('init', g, '--nope', '--json');
    expect(u).toExit(2);
    expect(u.json.error.code).toBe('USAGE');
    expect(existsSync(g)).toBe(false);
    expect(jship('--help')).toExit(0);
    // A verb group without its verb is a usage error (help goes to stderr).
    expect(jship('link')).toExit(2);
    expect(jship('link', '--help')).toExit(0);
    expect(jship('init', '--help').stdout).toMatch(/--journal-size/);
  });

  it('refuses bad input with exit 1 and leaves existing files alone', () => {
    const g = join(dir, 'g');
    // A volume that does not exist and has no size: nothing is created.
    const missing = jship('init', g, '--volume', `a=${join(dir, 'missing.img')}`, '--journal-size', '2M');
    expect(missing).toExit(1);
    expect(missing.stderr).toMatch(/missing\.img does not exist/);
    expect(existsSync(g)).toBe(false);
    // A journal below the minimum: the volume file it would have created is not left behind.
    const small = jship('init', g, '--volume', `a=${join(dir, 'new.img')}:1M`, '--journal-size', '100K', '--json');
    expect(small).toExit(1);
    expect(small.json.error.code).toBe('JOURNAL_TOO_SMALL');
    expect(existsSync(join(dir, 'new.img'))).toBe(false);
    // A directory that holds something already.
    writeFileSync(join(dir, 'precious'), 'keep me');
    const busy = jship('init', dir, '--volume', `a=${join(dir, 'x.img')}:1M`, '--journal-size', '2M');
    expect(busy).toExit(1);
    expect(readFileSync(join(dir, 'precious'), 'utf8')).toBe('keep me');
    expect(readdirSync(dir).sort()).toEqual(['precious']);
    // An existing volume of another size.
    writeFileSync(join(dir, 'sized.img'), Buffer.alloc(4096, 7));
    const sized = jship('init', g, '--volume', `a=${join(dir, 'sized.img')}:8K`, '--journal-size', '2M');
    expect(sized).toExit(1);
    expect(readFileSync(join(dir, 'sized.img')).equals(Buffer.alloc(4096, 7))).toBe(true);
    // One file named twice, through a symbolic or a hard link, or as a volume and the journal: each wrote
    // over the other's bytes (only the same spelling of a path was refused).
    writeFileSync(join(dir, 'one.img'), Buffer.alloc(8192, 3));
    symlinkSync(join(dir, 'one.img'), join(dir, 'sym.img'));
    linkSync(join(dir, 'one.img'), join(dir, 'hard.img'));
    for (const [args, what] of [
      [['--volume', `a=${join(dir, 'one.img')}`, '--volume', `b=${join(dir, 'sym.img')}`], /named twice among the volumes/],
      [['--volume', `a=${join(dir, 'one.img')},${join(dir, 'hard.img')}`], /named twice among the volumes/],
      [['--volume', `a=${join(dir, 'sym.img')}`, '--journal', join(dir, 'one.img')], /named both as a volume and as the journal/],
    ] as const) {
      const twice = jship('init', g, ...args, '--journal-size', '2M', '--json');
      expect(twice.code, args.join(' ')).toBe(2);
      expect(twice.json.error).toMatchObject({ code: 'BAD_VOLUME_SPEC', message: expect.stringMatching(what) });
      expect(existsSync(g)).toBe(false);
    }
    expect(readFileSync(join(dir, 'one.img')).equals(Buffer.alloc(8192, 3))).toBe(true);
    // Another group's journal as a volume: its superblock says so.
    const other = join(dir, 'other');
    expect(jship('init', other, '--volume', `a=${join(dir, 'other-a.img')}:1M`, '--journal-size', '2M')).toExit(0);
    const journal = join(other, 'journal.jv');
    const before = readFileSync(journal);
    const theirs = jship('init', g, '--volume', `a=${journal}`, '--journal-size', '2M', '--json');
    expect(theirs).toExit(2);
    expect(theirs.json.error).toMatchObject({ code: 'BAD_VOLUME_SPEC', message: expect.stringContaining(`is the journal of jship group ${JSON.parse(readFileSync(join(other, 'group.json'), 'utf8')).groupId}`) });
    expect(readFileSync(journal).equals(before)).toBe(true);
    expect(existsSync(g)).toBe(false);
    // ...or as this group's journal: it is never replaced, and never to be removed (its hint said "remove it").
    const asJournal = jship('init', g, '--volume', `a=${join(dir, 'g-a.img')}:1M`, '--journal-size', '2M', '--journal', journal, '--json');
    expect(asJournal).toExit(1);
    expect(asJournal.json.error).toMatchObject({ code: 'GROUP_EXISTS', message: expect.stringContaining('is the journal of jship group'), hint: expect.stringContaining('choose another path for this group\'s --journal') });
    expect(asJournal.json.error.hint).not.toMatch(/remove/);
    expect(readFileSync(journal).equals(before)).toBe(true);
    expect(existsSync(g)).toBe(false);
    expect(existsSync(join(dir, 'g-a.img'))).toBe(false);
    // Not a group.
    const notGroup = jship('status', join(dir, 'nowhere'), '--json');
    expect(notGroup).toExit(1);
    expect(notGroup.json.error.code).toBe('GROUP_NOT_FOUND');
  });

  it('refuses a journal whose superblock copies are both damaged, changing nothing', () => {
    const g = join(dir, 'g');
    expect(jship('init', g, '--volume', `a=${join(dir, 'a.img')}:1M`, '--journal-size', '2M')).toExit(0);
    const jpath = join(g, 'journal.jv');
    const fd = openSync(jpath, 'r+');
    writeSync(fd, Buffer.from('garbage!'), 0, 8, 50);
    writeSync(fd, Buffer.from('garbage!'), 0, 8, 4096 + 50);
    closeSync(fd);
    const before = readFileSync(jpath);
    const r = jship('status', g, '--json');
    expect(r).toExit(1);
    expect(r.json.error.code).toBe('JOURNAL_CORRUPT');
    expect(r.json.error.message).toMatch(/both superblock copies/);
    expect(readFileSync(jpath).equals(before)).toBe(true);
    // A foreign file in its place.
    writeFileSync(jpath, Buffer.alloc(2 * 1024 * 1024, 0x41));
    const f = jship('mark', g, 'x', '--json');
    expect(f).toExit(1);
    expect(f.json.error.code).toBe('JOURNAL_NOT_JOURNAL');
  });

  it('shows the last checkpoint of a group another process owns and refuses to write to it', async () => {
    const g = join(dir, 'g');
    expect(jship('init', g, '--volume', `a=${join(dir, 'a.img')}:1M`, '--journal-size', '2M')).toExit(0);
    const script = `import { openGroup } from ${JSON.stringify(new URL('../../dist/index.js', import.meta.url).href)};
      const g = await openGroup(${JSON.stringify(g)}); process.stdout.write('OPEN\\n'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('OPEN')) resolve(); }));
    try {
      const st = await new Promise<string>((resolve) => {
        const p = spawn(process.execPath, [BIN, 'status', g]);
        let out = '';
        p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
        p.on('exit', () => resolve(out));
      });
      expect(st).toMatch(new RegExp(`owned by process ${child.pid}`));
      const mark = await new Promise<number>((resolve) => spawn(process.execPath, [BIN, 'mark', g, 'x']).on('exit', (c) => resolve(c ?? -1)));
      expect(mark).toBe(1);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('jship demo', () => {
  const dir = tempDir();
  it('runs the flow and passes every check', () => {
    const r = jship('demo', join(dir, 'demo'), '--json');
    // What the demo said, should it fail (it failed once in CI within 0.2 s, exit 1, and the message was lost).
    expect(r).toExit(0);
    expect(r.json.ok).toBe(true);
    expect(r.json.checks.length).toBeGreaterThanOrEqual(8);
    expect(r.json.checks.some((c: { name: string }) => /direct link/.test(c.name))).toBe(true);
    expect(jship('demo', dir)).toExit(2); // not empty
  });
});
