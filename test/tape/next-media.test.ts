import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { DirDestination, type TapeDestination } from '../../src/tape/destination.js';
import { exportGroup } from '../../src/tape/export.js';
import { BIN, KiB, MiB, jshipJson, makeGroup, mountTmpfs, tempDir, unmount } from '../helpers.js';

/** A group of one 4 MiB volume with 48 writes of 40 000 random bytes (a base of it and the updates: about 4 MB of tape). */
async function group(dir: string): Promise<string> {
  const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
  const grp = await openSiteGroup(g, { checkpointIntervalMs: 0 });
  for (let i = 0; i < 48; i++) await grp.write('a', i * 80 * KiB, randomBytes(40_000));
  await grp.close();
  return g;
}

const tapesIn = (d: string): string[] => (existsSync(d) ? readdirSync(d).filter((n) => n.endsWith('.tar.zst')).sort() : []);
const serialOf = (name: string): number => Number(/^jship-(\d{6})-/.exec(name)?.[1]);

describe('--next-media: a media set across media', () => {
  const dir = tempDir();
  const mounts: string[] = [];
  afterAll(() => {
    for (const m of mounts) {
      unmount(m);
      rmSync(m, { recursive: true, force: true });
    }
  });

  it('a directory on a disk that fills: the command swaps the medium, the interrupted tape is written again whole on the next; every tape once, the base continued, restores exactly', async () => {
    const g = await group(join(dir, 'disk'));
    const medium = `${dir}-medium`;
    mountTmpfs(medium, '1536k');
    mounts.push(medium);
    const carried = join(dir, 'carried');
    const log = join(dir, 'media.log');
    // "Swapping the disk": what is on the medium is carried away, the medium is empty again.
    const script = join(dir, 'swap.sh');
    writeFileSync(script, `set -e\nn=$((JSHIP_MEDIA_NUMBER - 1))\nmkdir -p "${carried}/m$n"\nmv "$JSHIP_MEDIA_WHERE"/* "${carried}/m$n/"\necho "$JSHIP_MEDIA_NUMBER $JSHIP_MEDIA_COUNTED next=$JSHIP_NEXT_SERIAL" >> "${log}"\n`);
    const r = jshipJson('export', g, '--to', `${join(medium, 'tapes')}/`, '--base', '--media-size', '512K', '--next-media', `sh ${script}`);
    expect(r).toExit(0);
    const serials = (r.out.tapes as Array<{ serial: number }>).map((t) => t.serial);
    expect(serials).toEqual(serials.map((_, i) => i + 1));
    // One base, continued across media: its 64 chunks each on exactly one counted tape.
    const bases = (r.out.tapes as Array<{ base: { baseId: number; records: number } | null }>).flatMap((t) => (t.base ? [t.base] : []));
    expect(new Set(bases.map((b) => b.baseId)).size).toBe(1);
    expect(bases.reduce((n, b) => n + b.records, 0)).toBe(64);
    expect(r.out.base.records).toBe(64);
    // Each medium holds whole tapes and its own manifest; together they are the chain, once each.
    const media = [...readdirSync(carried).sort().map((m) => join(carried, m)), join(medium, 'tapes')];
    expect(media.length).toBeGreaterThanOrEqual(3);
    const onMedia = media.map((m) => tapesIn(m).map(serialOf));
    expect(onMedia.flat()).toEqual(serials);
    for (const [i, m] of media.entries()) {
      const manifest = JSON.parse(readFileSync(join(m, 'jship-manifest.json'), 'utf8'));
      expect(manifest.tapes.map((t: { serial: number }) => t.serial), m).toEqual(onMedia[i]);
      expect(readdirSync(m).filter((n) => n.startsWith('.'))).toEqual([]);
    }
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toEqual(onMedia.slice(0, -1).map((s, i) => `${i + 2} ${s.join(',')} next=${(s[s.length - 1] ?? 0) + 1}`));
    // The replica takes the media in any order and restores the volume exactly.
    const rep = join(dir, 'rep');
    const imp = jshipJson('import', rep, ...[...media].reverse());
    expect(imp).toExit(0);
    expect(imp.out.missingSerials).toEqual([]);
    expect(jshipJson('restore', rep, '--target', join(dir, 'out.img'))).toExit(0);
    expect(readFileSync(join(dir, 'out.img')).equals(readFileSync(join(dir, 'disk', 'a.img')))).toBe(true);
    // The journal was purged of what the tapes hold.
    expect(jshipJson('status', g).out.journal.records).toBe(0);
  }, 180_000);

  it('a command that fails stops the export: the tapes finished on the medium are counted and named, nothing past them purged; the rerun goes on after them', async () => {
    const g = await group(join(dir, 'fail'));
    const medium = `${dir}-medium2`;
    mountTmpfs(medium, '1536k');
    mounts.push(medium);
    const r = jshipJson('export', g, '--to', `${join(medium, 'tapes')}/`, '--base', '--media-size', '512K', '--next-media', 'echo no disk left >&2; exit 3');
    expect(r).toExit(1);
    expect(r.out.error.code).toBe('MEDIA_END');
    expect(r.out.error.message).toMatch(/the medium ended \(tapes 1, 2(, \d+)* finished on it and counted\), and --next-media "echo no disk left >&2; exit 3" failed \(exit 3\): no disk left/);
    const counted = tapesIn(join(medium, 'tapes'));
    const chain = JSON.parse(readFileSync(join(g, 'chain.json'), 'utf8'));
    expect(chain.nextSerial).toBe(counted.length + 1);
    // The same export to another (larger) medium goes on from the next serial.
    const again = jshipJson('export', g, '--to', `${join(dir, 'fail-m2')}/`, '--media-size', '512K');
    expect(again).toExit(0);
    expect(again.out.tapes[0].serial).toBe(counted.length + 1);
    const rep = join(dir, 'fail-rep');
    expect(jshipJson('import', rep, join(medium, 'tapes'), join(dir, 'fail-m2'))).toExit(0);
    expect(jshipJson('restore', rep, '--target', join(dir, 'fail.img'))).toExit(0);
    expect(readFileSync(join(dir, 'fail.img')).equals(readFileSync(join(dir, 'fail', 'a.img')))).toBe(true);
  }, 180_000);

  it('a drive (FIFO) whose medium ends after 5 blocks: the command loads the next, the tape is written whole on it, in whole blocks', async () => {
    const g = await group(join(dir, 'drive'));
    const fifo = join(dir, 'nst0');
    expect(spawnSync('mkfifo', [fifo])).toExit(0);
    const m1 = join(dir, 'drive-m1');
    const m2 = join(dir, 'drive-m2');
    // Medium 1 takes 5 blocks of 64 KiB and ends; the "autoloader" puts medium 2 behind the FIFO.
    const first = spawn('sh', ['-c', `head -c ${5 * 64 * KiB} "${fifo}" > "${m1}"`], { stdio: 'ignore' });
    const loaded = join(dir, 'loaded');
    const load = `(cat "${fifo}" > "${m2}"; touch "${loaded}") >/dev/null 2>&1 &`;
    const r = jshipJson('export', g, '--to', fifo, '--base', '--next-media', load);
    expect(r).toExit(0);
    expect(r.out.tapes.map((t: { serial: number }) => t.serial)).toEqual([1]);
    await new Promise<void>((resolve) => first.on('exit', () => resolve()));
    for (let i = 0; i < 600 && !existsSync(loaded); i++) await new Promise((res) => setTimeout(res, 50));
    expect(existsSync(loaded)).toBe(true);
    expect(readFileSync(m1).length).toBe(5 * 64 * KiB);
    const whole = readFileSync(m2);
    expect(whole.length % (64 * KiB)).toBe(0);
    expect(jshipJson('verify', m2)).toExit(0);
    expect(jshipJson('verify', m1)).toExit(1);
    const rep = join(dir, 'drive-rep');
    expect(jshipJson('import', rep, m2)).toExit(0);
    expect(jshipJson('restore', rep, '--target', join(dir, 'drive.img'))).toExit(0);
    expect(readFileSync(join(dir, 'drive.img')).equals(readFileSync(join(dir, 'drive', 'a.img')))).toBe(true);
    // A tape that does not fit on a whole medium either: stopped, not an endless row of media.
    const g2 = await group(join(dir, 'drive2'));
    const small = spawn('sh', ['-c', `while true; do head -c ${2 * 64 * KiB} "${fifo}" > /dev/null; done`], { stdio: 'ignore', detached: true });
    const nofit = jshipJson('export', g2, '--to', fifo, '--base', '--next-media', 'true');
    process.kill(-(small.pid as number), 'SIGKILL');
    expect(nofit).toExit(1);
    expect(nofit.out.error.message).toMatch(/ended on a new medium too: tape 1 does not fit on one medium/);
  }, 180_000);

  it('a medium that ends after the base completed, its last base records on the tape cut short: a new base is taken, never a base with chunks missing', async () => {
    const g = await group(join(dir, 'late'));
    const grp = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    const out = join(dir, 'late-tapes');
    const plain = new DirDestination(out);
    let ended = false;
    // The first medium ends as the first tape is committed: everything was written to it, the base complete.
    const destination: TapeDestination = {
      where: plain.where, durable: true, splittable: true,
      async open(serial) {
        const o = await plain.open(serial);
        if (ended) return o;
        return {
          write: (c) => o.write(c),
          async commit() {
            ended = true;
            await o.abort();
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          },
          abort: () => o.abort(),
        };
      },
    };
    const media: number[] = [];
    const r = await exportGroup(grp, { destination, base: true, nextMedia: async (m) => { media.push(m.medium); } });
    await grp.close();
    expect(media).toEqual([2]);
    expect(r.tapes.map((t) => t.serial)).toEqual([1]);
    expect(r.base?.records).toBe(64);
    expect(r.tapes[0]!.trailer.base).toMatchObject({ baseId: r.base!.baseId.toString(), records: 64 });
    const rep = join(dir, 'late-rep');
    expect(jshipJson('import', rep, out)).toExit(0);
    expect(jshipJson('restore', rep, '--target', join(dir, 'late.img'))).toExit(0);
    expect(readFileSync(join(dir, 'late.img')).equals(readFileSync(join(dir, 'late', 'a.img')))).toBe(true);
  });

  it('usage: standard output and object storage have no medium to change', async () => {
    const g = await group(join(dir, 'usage'));
    const r = spawnSync(process.execPath, [BIN, 'export', g, '--to', '-', '--next-media', 'true', '--json'], { encoding: 'utf8' });
    expect(r).toExit(2);
    expect(JSON.parse(r.stderr || r.stdout).error.message).toMatch(/--next-media goes with a directory, a file or a tape drive/);
  });
});
