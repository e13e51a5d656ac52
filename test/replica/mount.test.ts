import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { PointMount } from '../../src/replica/mount.js';
import { BIN, KiB, MiB, jshipJson, jshipProc, makeGroup, tempDir } from '../helpers.js';
import { client } from '../nbd/helpers.js';

/** `jship mount … --json` running until stopped; resolves once it is ready. */
const mount = (...args: string[]): ReturnType<typeof jshipProc> => jshipProc('mount', ...args);

describe('jship mount (a point in time over NBD, read-only, from the tapes)', () => {
  const dir = tempDir();

  it('serves each marker byte-exact to qemu-img and nbdcopy without restoring; read-only; refuses what restore refuses', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB, b: 1 * MiB }, { journalSize: 32 * MiB });
    const snap = (tag: string): void => {
      copyFileSync(join(dir, 'a.img'), join(dir, `a-${tag}.img`));
      copyFileSync(join(dir, 'b.img'), join(dir, `b-${tag}.img`));
    };
    const tapes = join(dir, 'tapes');
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--base')).toExit(0);
    let group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 40; i++) await group.write(i % 2 ? 'a' : 'b', (i * 37 % 16) * 64 * KiB, randomBytes(64 * KiB));
    await group.flush();
    await group.mark('m1');
    snap('m1');
    await group.close();
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);
    group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 30; i++) await group.write('a', (i * 53 % 60) * 64 * KiB + 512, randomBytes(16 * KiB));
    await group.writeZeroes('a', 1 * MiB, 256 * KiB);
    await group.trim('b', 0, 128 * KiB);
    await group.flush();
    await group.mark('m2');
    snap('m2');
    await group.close();
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);

    for (const m of ['m1', 'm2']) {
      const sock = join(dir, `${m}.sock`);
      const srv = await mount(rep, '--marker', m, '--socket', sock);
      try {
        expect(srv.ready.point).toMatch(new RegExp(`^marker "${m}" \\(seq \\d+\\)$`));
        const uri = (v: string): string => srv.ready.exports.find((x: { name: string }) => x.name === v).uri;
        client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(dir, `a-${m}.img`), uri('a'));
        client('nbdcopy', uri('b'), join(dir, `b-${m}-copy.img`));
        expect(readFileSync(join(dir, `b-${m}-copy.img`)).equals(readFileSync(join(dir, `b-${m}.img`)))).toBe(true);
        // Read-only: the client sees it and a write is refused.
        expect(client('nbdinfo', uri('a'))).toMatch(/is_read_only: true/);
        const w = spawnSync('qemu-io', ['-f', 'raw', uri('a'), '-c', 'write -P 0x99 0 4k'], { encoding: 'utf8' });
        expect(`${w.stdout}${w.stderr}`).toMatch(/read-only|Permission denied|Operation not permitted/i);
      } finally {
        expect(await srv.stop()).toBe(0);
      }
    }
    // The pull list: the tape files (and bytes of segments) a restore or a mount of m1 reads.
    const plan = jshipJson('restore', rep, '--marker', 'm1', '--target', `${join(dir, 'dry')}/`, '--dry-run');
    expect(plan).toExit(0);
    const pull = plan.out.plan.pull as Array<{ chain: string; serial: number; file: string; segments: number; bytes: number }>;
    expect(pull.map((t) => ({ chain: t.chain, serial: t.serial }))).toEqual(plan.out.plan.tapes);
    expect(pull.reduce((n, t) => n + t.segments, 0)).toBe(plan.out.plan.segments);
    for (const t of pull) {
      expect(readdirSync(join(rep, 'tapes'))).toContain(t.file);
      expect(t.bytes).toBeGreaterThan(0);
      expect(t.bytes).toBeLessThanOrEqual(statSync(join(rep, 'tapes', t.file)).size);
    }
    const human = spawnSync(process.execPath, [BIN, 'restore', rep, '--marker', 'm1', '--target', `${join(dir, 'dry')}/`, '--dry-run'], { encoding: 'utf8' });
    expect(human.stdout).toMatch(/tapes to have at hand \([\d.]+ \S+ of segments at most\):\n {4}jship-0+1-\S+\.tar\.zst {2}\d+ segments?, /);
    // Only the volumes asked for; a point restore refuses is refused the same way.
    const one = await mount(rep, '--volume', 'b', '--listen', '127.0.0.1:0');
    try {
      expect(one.ready.exports.map((x: { name: string }) => x.name)).toEqual(['b']);
      expect(one.ready.exports[0].uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/b$/);
    } finally {
      expect(await one.stop()).toBe(0);
    }
    const refused = jshipJson('mount', rep, '--seq', '999999', '--socket', join(dir, 'x.sock'));
    expect(refused).toExit(1);
    expect(refused.out.error.code).toBe('RESTORE_REFUSED');
    expect(jshipJson('restore', rep, '--seq', '999999', '--target', join(dir, 'x.img')).out.error.message).toBe(refused.out.error.message);
    expect(jshipJson('mount', rep, '--marker', 'm1')).toExit(2);
  });

  it('encrypted tapes: mounted with the key their labels name; without it, or with another, refused before any export is offered', async () => {
    const g = await makeGroup(join(dir, 'enc'), { a: 2 * MiB }, { journalSize: 16 * MiB });
    const key = join(dir, 'k.key');
    const other = join(dir, 'other.key');
    writeFileSync(key, randomBytes(32));
    writeFileSync(other, randomBytes(32));
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 16; i++) await group.write('a', i * 128 * KiB, randomBytes(64 * KiB));
    await group.close();
    const tapes = join(dir, 'enc-tapes');
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--base', '--encrypt-key', key)).toExit(0);
    const rep = join(dir, 'enc-rep');
    expect(jshipJson('import', rep, tapes, '--key', key)).toExit(0);
    for (const args of [[], ['--key', other]]) {
      const r = jshipJson('mount', rep, '--socket', join(dir, 'enc.sock'), ...args);
      expect(r).toExit(1);
      expect(r.out.error.code).toMatch(/^TAPE_(KEY_REQUIRED|AUTH_FAILED)$/);
      expect(r.out.error.hint).toMatch(/give the key with id [0-9a-f]{16}/);
    }
    const srv = await mount(rep, '--socket', join(dir, 'enc.sock'), '--key', key);
    try {
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(dir, 'enc', 'a.img'), srv.ready.exports[0].uri);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  });

  it('--writable: writes (unaligned too) read back; the tapes and SVOLs of the replica are unchanged and the scratch file is gone after the stop', async () => {
    const g = await makeGroup(join(dir, 'w'), { a: 2 * MiB }, { journalSize: 16 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 8; i++) await group.write('a', i * 256 * KiB, randomBytes(64 * KiB));
    await group.close();
    const tapes = join(dir, 'w-tapes');
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--base')).toExit(0);
    const rep = join(dir, 'w-rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    expect(jshipJson('restore', rep)).toExit(0); // the SVOLs, to check they stay as they are
    const hashes = (): string => spawnSync('sh', ['-c', `cd ${rep} && sha256sum tapes/* svol/*`], { encoding: 'utf8' }).stdout;
    const before = hashes();
    const scratch = join(dir, 'scratch');
    const srv = await mount(rep, '--socket', join(dir, 'w.sock'), '--writable', '--scratch', scratch);
    try {
      expect(srv.ready.scratch).toEqual([expect.stringMatching(new RegExp(`^${scratch}/mount-${srv.ready.pid}-[0-9a-f]{8}-a\\.scratch$`))]);
      const uri = srv.ready.exports[0].uri;
      client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x5a 1000 3000', '-c', 'write -z 256k 64k');
      const back = client('qemu-io', '-f', 'raw', uri, '-c', 'read -P 0x5a 1000 3000', '-c', 'read -P 0 256k 64k');
      expect(back).not.toMatch(/Pattern verification failed/);
      // Around the write, the point's own bytes.
      const img = readFileSync(join(dir, 'w', 'a.img'));
      const got = Buffer.from(client('sh', '-c', `nbdcopy '${uri}' - | head -c 1000 | od -An -tx1 -v`).replace(/\s+/g, ''), 'hex');
      expect(got.equals(img.subarray(0, 1000))).toBe(true);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
    expect(hashes()).toBe(before);
    expect(spawnSync('ls', ['-A', scratch], { encoding: 'utf8' }).stdout).toBe('');
    expect(jshipJson('mount', rep, '--socket', join(dir, 'w.sock'), '--keep-scratch')).toExit(2);

    // What a killed mount left (its cache, its layer) goes at the next mount; a live process's files and kept
    // layers stay. Before, they stayed forever, and a later process given the same pid could not mount writable.
    const dead = spawnSync('true').pid;
    const left = [`mount-${dead}.cache`, `mount-${dead}-a.scratch`, `mount-${dead}-0badc0de.cache`, `mount-${dead}-0badc0de-a.scratch`];
    const stays = [`mount-${process.pid}-0badc0de.cache`, `keep-${dead}-0badc0de-a.scratch`, 'notes.txt'];
    for (const n of [...left, ...stays]) writeFileSync(join(scratch, n), 'x');
    const again = await mount(rep, '--socket', join(dir, 'w.sock'), '--writable', '--keep-scratch', '--scratch', scratch);
    let kept: string;
    try {
      kept = again.ready.scratch[0];
      expect(kept).toMatch(new RegExp(`/keep-${again.ready.pid}-[0-9a-f]{8}-a\\.scratch$`));
      const now = readdirSync(scratch);
      expect(left.filter((n) => now.includes(n))).toEqual([]);
      expect(stays.filter((n) => !now.includes(n))).toEqual([]);
    } finally {
      expect(await again.stop()).toBe(0);
    }
    expect(readdirSync(scratch).sort()).toEqual([...stays, kept.slice(scratch.length + 1)].sort());
    // A process given the pid of a mount that was killed: the name of its layer was taken, and it could not mount.
    writeFileSync(join(scratch, `mount-${process.pid}-a.scratch`), 'x');
    const m = await PointMount.open(rep, { point: { kind: 'latest' }, writable: true, scratchDir: scratch, cacheBytes: 0 });
    await m.close();
  });
});
