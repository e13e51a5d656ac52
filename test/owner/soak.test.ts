import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { MiB, jshipAsync, jshipJson, makeGroup, mountTmpfs, tempDir, unmount } from '../helpers.js';
import { client, serve, type Served } from '../nbd/helpers.js';
import { linkProc, until } from '../link/helpers.js';

/** Nights to run: a couple in `npm test`, more with JSHIP_SOAK_NIGHTS (npm run soak). */
const NIGHTS = Number(process.env.JSHIP_SOAK_NIGHTS ?? 4);

/** fio writing 4 KiB blocks at a bounded rate for `seconds` through NBD; resolves when it ends (or is cut off). */
function fio(uri: string, seconds: number): { done: Promise<number | null>; kill: () => void } {
  const p = spawn('fio', ['--name=soak', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', '--size=16M',
    '--rate_iops=400', '--refill_buffers=1', '--time_based', `--runtime=${seconds}`], { stdio: 'ignore' });
  return { done: new Promise((r) => p.on('close', r)), kill: () => p.kill('SIGKILL') };
}

const tapeNames = (d: string): string[] => readdirSync(d).filter((n) => n.endsWith('.tar.zst')).sort();

describe('the unattended loop (soak)', () => {
  const dir = tempDir();
  const mounts: string[] = [];
  afterEach(() => {
    for (const m of mounts.splice(0)) unmount(m);
  });

  it(`${NIGHTS} nights: fio through serve, marks, exports two and three at a time, two pulling secondaries (one killed), serve stopped under load, the media full once; every marker restores byte-exact everywhere`, async () => {
    const g = await makeGroup(dir, { a: 16 * MiB }, { journalSize: 64 * MiB });
    const key = groupPaths(g).linkKey;
    const media = join(dir, 'media');
    mountTmpfs(media, '6m');
    mounts.push(media);
    const archive = join(dir, 'archive');
    mkdirSync(archive);
    let mediaFull = 0;
    /** Carries the media's tapes to the archive (swapping the cartridge). */
    const swapMedia = (): void => {
      for (const n of tapeNames(media)) {
        copyFileSync(join(media, n), join(archive, n));
        rmSync(join(media, n));
      }
    };
    let srv: Served = await serve(g, '--link-listen', '127.0.0.1:0');
    const linkAt = (srv.ready as any).link as string;
    const uri = srv.ready.exports[0]!.uri;
    const pull = (name: string) => linkProc('pull', join(dir, name), '--from', linkAt, '--psk', key, '--name', name);
    let b = await pull('site-b');
    let c = await pull('site-c');
    const markers: Array<{ name: string; image: Buffer }> = [];
    const exportAll = async (n: number): Promise<void> => {
      const rs = await Promise.all(Array.from({ length: n }, () => jshipAsync('export', g, '--to', `${media}/`)));
      const full = rs.filter((r) => r.code !== 0);
      for (const r of full) {
        expect(r.out.error.code, JSON.stringify(r.out)).toBe('IO');
        expect(r.out.error.message).toMatch(/no space left/i);
      }
      if (full.length > 0) {
        mediaFull++;
        swapMedia();
        const again = await jshipAsync('export', g, '--to', `${media}/`);
        expect(again.code, JSON.stringify(again.out)).toBe(0);
      }
    };
    try {
      expect((await jshipAsync('export', g, '--to', `${media}/`, '--base')).code).toBe(0);
      for (let night = 1; night <= NIGHTS; night++) {
        const load = fio(uri, 2);
        if (night === 2) {
          // The site-c secondary dies in the middle of the night and is started again.
          await until('site-c to store a tape', () => c.events.some((e) => e.event === 'tape-stored'), 60_000);
          await c.kill();
          c = await pull('site-c');
        }
        if (night === 3) {
          // The server is stopped under load and started again (fio's connection breaks).
          const stopped = await srv.stop();
          expect(stopped.code).toBe(0);
          load.kill();
          srv = await serve(g, '--link-listen', linkAt);
        }
        await load.done;
        // Nothing writes now: the image at the mark is what the NBD export reads.
        client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', uri, join(dir, `night-${night}.img`));
        expect(jshipJson('mark', g, `night-${night}`).code).toBe(0);
        markers.push({ name: `night-${night}`, image: readFileSync(join(dir, `night-${night}.img`)) });
        await exportAll(night % 2 === 0 ? 2 : 3);
      }
      await exportAll(1);
      // Both secondaries catch up with the last record.
      await until('both secondaries to confirm everything', () => {
        const link = jshipJson('status', g).out.link as Array<{ name: string; records: string }>;
        return link.length === 2 && link.every((s) => s.records === '0');
      }, 120_000);
      expect((jshipJson('status', g).out.link as Array<{ name: string }>).map((s) => s.name).sort()).toEqual(['site-b', 'site-c']);
    } finally {
      expect(await b.stop()).toBe(0);
      expect(await c.stop()).toBe(0);
      expect((await srv.stop()).code).toBe(0);
    }
    swapMedia();
    expect(mediaFull).toBeGreaterThanOrEqual(1);
    // One chain: serials 1..n, each once.
    const names = tapeNames(archive);
    expect(names.map((n) => Number(/^jship-(\d+)-/.exec(n)?.[1]))).toEqual(names.map((_, i) => i + 1));
    expect(readdirSync(archive).filter((n) => n.startsWith('.'))).toEqual([]);
    const tapes = join(dir, 'site-t');
    const imported = jshipJson('import', tapes, archive);
    expect(imported.code, JSON.stringify(imported.out)).toBe(0);
    expect(imported.out.gaps).toEqual([]);
    // Every marker, from the tapes and at both secondaries, byte-exact.
    for (const site of ['site-t', 'site-b', 'site-c']) {
      expect(readdirSync(join(dir, site, 'tapes')).filter((n) => n.startsWith('.'))).toEqual([]);
      for (const m of markers) {
        const out = join(dir, `${site}-${m.name}.img`);
        const r = jshipJson('restore', join(dir, site), '--marker', m.name, '--target', out);
        expect(r.code, `${site} ${m.name}: ${JSON.stringify(r.out)}`).toBe(0);
        expect(readFileSync(out).equals(m.image), `${site} ${m.name}`).toBe(true);
      }
    }
    expect(existsSync(join(g, 'lock'))).toBe(false);
  }, 120_000 + NIGHTS * 45_000);
});
