import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { MiB, jshipAsync, jshipJson, makeGroup, mountTmpfs, tempDir, unmount } from '../helpers.js';
import { client, serve, type Served } from '../nbd/helpers.js';
import { linkProc, until } from '../link/helpers.js';
import { S3Peer } from '../s3/peer.js';

/** Nights to run: a couple in `npm test`, more with JSHIP_SOAK_NIGHTS (npm run soak). */
const NIGHTS = Number(process.env.JSHIP_SOAK_NIGHTS ?? 4);

/** fio writing 4 KiB blocks at a bounded rate for `seconds` through NBD; resolves when it ends (or is cut off). */
function fio(uri: string, seconds: number): { done: Promise<number | null>; kill: () => void } {
  const p = spawn('fio', ['--name=soak', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', '--size=16M',
    '--rate_iops=400', '--refill_buffers=1', '--time_based', `--runtime=${seconds}`], { stdio: 'ignore' });
  return { done: new Promise((r) => p.on('close', r)), kill: () => p.kill('SIGKILL') };
}

const tapeNames = (d: string): string[] => readdirSync(d).filter((n) => n.endsWith('.tar.zst')).sort();
const serialOf = (name: string): number => Number(/jship-(\d+)-/.exec(name)?.[1]);

/** The object store the nightly exports also go to (its own ports: the S3 tests may run beside this file). */
const peer = new S3Peer('/tmp/jship-soak-s3-peer', { rgw: 7490, mon: 3310, monV1: 6799 });
const VAULT = 's3://soak/tapes/';

describe('the unattended loop (soak)', () => {
  const dir = tempDir();
  const mounts: string[] = [];
  beforeAll(async () => {
    await peer.start(['soak']);
    Object.assign(process.env, peer.awsEnv);
  }, 120_000);
  afterAll(() => peer.stop());
  afterEach(() => {
    for (const m of mounts.splice(0)) unmount(m);
  });

  it(`${NIGHTS} nights: fio through serve, marks, exports two and three at a time (to a directory and to S3), two pulling secondaries (one killed), serve stopped under load, the media full once; every marker restores byte-exact everywhere`, async () => {
    const g = await makeGroup(dir, { a: 16 * MiB }, { journalSize: 64 * MiB });
    const key = groupPaths(g).linkKey;
    const media = join(dir, 'media');
    mountTmpfs(media, '6m');
    mounts.push(media);
    const archive = join(dir, 'archive');
    mkdirSync(archive);
    let mediaFull = 0;
    /** Carries the media's tapes to the archive (swapping the cartridge for an empty one). */
    const swapMedia = (): void => {
      for (const n of tapeNames(media)) {
        copyFileSync(join(media, n), join(archive, n));
        rmSync(join(media, n));
      }
      rmSync(join(media, 'filler'), { force: true });
    };
    /** The cartridge has 16 KiB left: the next export to it runs out of space. */
    const fillMedia = (): void => {
      const fs = statfsSync(media);
      writeFileSync(join(media, 'filler'), Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - 16 * 1024)));
    };
    let srv: Served = await serve(g, '--link-listen', '127.0.0.1:0');
    const linkAt = (srv.ready as any).link as string;
    const uri = srv.ready.exports[0]!.uri;
    const pull = (name: string) => linkProc('pull', join(dir, name), '--from', linkAt, '--psk', key, '--name', name);
    let b = await pull('site-b');
    let c = await pull('site-c');
    const markers: Array<{ name: string; image: Buffer }> = [];
    /** `n` exports at once to the media, and (with `vault`) one more to the object store. */
    const exportAll = async (n: number, vault: boolean): Promise<void> => {
      const targets = [...(vault ? [VAULT] : []), ...Array.from({ length: n }, () => `${media}/`)];
      const rs = await Promise.all(targets.map((to) => jshipAsync('export', g, '--to', to)));
      if (vault) expect(rs[0]!.code, JSON.stringify(rs[0]!.out)).toBe(0);
      const full = rs.filter((r) => r.code !== 0);
      for (const r of full) {
        // The media filled: the error names it and what was completed and counted (nothing else is lost).
        expect(r.out.error.code, JSON.stringify(r.out)).toBe('MEDIA_END');
        expect(r.out.error.message).toMatch(new RegExp(`^${media}: no space left \\(ENOSPC\\); (no tape of this export was completed|\\d+ tapes? of this export .* counted in the chain)`));
      }
      if (full.length > 0) {
        mediaFull++;
        swapMedia();
        const again = await jshipAsync('export', g, '--to', `${media}/`);
        expect(again).toExit(0);
      }
    };
    try {
      const first = await jshipAsync('export', g, '--to', `${media}/`, '--base');
      expect(first).toExit(0);
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
          expect(stopped).toExit(0);
          load.kill();
          srv = await serve(g, '--link-listen', linkAt);
        }
        await load.done;
        // Nothing writes now: the image at the mark is what the NBD export reads.
        client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', uri, join(dir, `night-${night}.img`));
        const marked = jshipJson('mark', g, `night-${night}`);
        expect(marked).toExit(0);
        markers.push({ name: `night-${night}`, image: readFileSync(join(dir, `night-${night}.img`)) });
        // Every morning the night's cartridge goes to the archive and an empty one goes in.
        swapMedia();
        if (night === 2) {
          // The cartridge runs out of space in the middle of the night's exports.
          fillMedia();
          await exportAll(2, false);
          expect(mediaFull).toBe(1);
        } else {
          await exportAll(night % 2 === 0 ? 1 : 2, true);
        }
      }
      // The last night's writes go to the object store alone (the races above may have left it nothing).
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x5a 0 64k', uri);
      client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', uri, join(dir, 'last.img'));
      const markedLast = jshipJson('mark', g, 'last');
      expect(markedLast).toExit(0);
      markers.push({ name: 'last', image: readFileSync(join(dir, 'last.img')) });
      const last = await jshipAsync('export', g, '--to', VAULT);
      expect(last).toExit(0);
      expect(last.out.tapes).toHaveLength(1);
      // Both secondaries catch up with the last record.
      await until('both secondaries to confirm everything', () => {
        const link = jshipJson('status', g).out.link as Array<{ name: string; records: number }>;
        return link.length === 2 && link.every((s) => s.records === 0);
      }, 120_000);
      expect((jshipJson('status', g).out.link as Array<{ name: string }>).map((s) => s.name).sort()).toEqual(['site-b', 'site-c']);
    } finally {
      expect(await b.stop()).toBe(0);
      expect(await c.stop()).toBe(0);
      expect((await srv.stop())).toExit(0);
    }
    swapMedia();
    expect(mediaFull).toBe(1);
    // One chain, split between the media and the object store: serials 1..n, each once, nothing half written.
    const inVault = (jshipJson('tapes', VAULT).out.tapes as Array<{ serial: number }>).map((t) => t.serial);
    expect(inVault.length).toBeGreaterThanOrEqual(1);
    const serials = [...tapeNames(archive).map(serialOf), ...inVault].sort((a, b) => a - b);
    expect(serials).toEqual(serials.map((_, i) => i + 1));
    expect(readdirSync(archive).filter((n) => n.startsWith('.'))).toEqual([]);
    expect((await peer.client.send(new ListMultipartUploadsCommand({ Bucket: 'soak' }))).Uploads ?? []).toEqual([]);
    const tapes = join(dir, 'site-t');
    const imported = jshipJson('import', tapes, archive, VAULT);
    expect(imported).toExit(0);
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
