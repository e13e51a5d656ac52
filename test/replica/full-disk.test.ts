import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { BIN, KiB, MiB, jshipJson, makeGroup, mountTmpfs, tempDir, unmount } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { randomBytes } from 'node:crypto';
import { openSiteGroup } from '../../src/owner/consumers.js';

describe('a replica on a full file system', () => {
  const dir = tempDir();
  const mounts: string[] = [];
  afterEach(() => {
    for (const m of mounts.splice(0)) unmount(m);
  });

  it('an import that runs out of space fails with a clear error and leaves nothing behind', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    await group.write('a', 0, Buffer.alloc(4096, 1));
    await exportTo(group, join(dir, 't'), { base: true });
    for (let i = 0; i < 24; i++) await group.write('a', (i % 4) * MiB, randomBytes(MiB)); // incompressible: a big tape
    await exportTo(group, join(dir, 't'));
    await group.close();
    const tapes = readdirSync(join(dir, 't')).sort().map((n) => join(dir, 't', n));
    const fs = join(dir, 'fs');
    mountTmpfs(fs, '8m');
    mounts.push(fs);
    const rep = join(fs, 'rep');
    expect((await importTapes(rep, [tapes[0]!])).ok).toBe(true);
    const r = jshipJson('import', rep, tapes[1]!);
    expect(r).toExit(1);
    expect(r.out.error.code).toBe('IO');
    expect(r.out.error.message).toMatch(/no space left/i);
    expect(r.out.error.hint).toMatch(/free space/);
    expect(readdirSync(rep).sort()).toEqual(['catalog.db', 'catalog.db-shm', 'catalog.db-wal', 'replica.json', 'tapes'].filter((n) => readdirSync(rep).includes(n)));
    expect(readdirSync(rep).some((n) => n.startsWith('lock'))).toBe(false);
    expect(readdirSync(join(rep, 'tapes')).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('a restore whose target runs out of space says which target, and leaves nothing there', async () => {
    const g = await makeGroup(join(dir, 'two'), { a: 4 * MiB, b: 4 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (const v of ['a', 'b']) for (let i = 0; i < 4; i++) await group.write(v, i * MiB, randomBytes(MiB));
    await exportTo(group, join(dir, 't2'), { base: true });
    await group.close();
    const rep = join(dir, 'rep2');
    expect((await importTapes(rep, readdirSync(join(dir, 't2')).filter((n) => n.endsWith('.tar.zst')).map((n) => join(dir, 't2', n)))).ok).toBe(true);
    // Two targets on two file systems: volume b's has room for 2 of its 4 MiB.
    const roomy = join(dir, 'roomy');
    const full = join(dir, 'full');
    mountTmpfs(roomy, '16m');
    mounts.push(roomy);
    mountTmpfs(full, '2m');
    mounts.push(full);
    const r = jshipJson('restore', rep, '--target', `a=${join(roomy, 'a.img')}`, '--target', `b=${join(full, 'b.img')}`);
    expect(r).toExit(1);
    expect(r.out.error.code).toBe('IO');
    expect(r.out.error.message).toMatch(/no space left/i);
    // Before, the message said "ENOSPC: no space left on device, write": not which of the targets.
    expect(r.out.error.message).toContain(join(full, 'b.img'));
    expect(r.out.error.message).not.toContain(join(roomy, 'a.img'));
    expect(r.out.error.hint).toMatch(/free space/);
    expect(readdirSync(roomy)).toEqual([]);
    expect(readdirSync(full)).toEqual([]);

    mkdirSync(join(dir, 'small'));
    // A file system whose largest file is smaller than the volume (here a file size limit): refused at the
    // start, naming it; before, its empty temporary file stayed, and its handle stayed open.
    const limited = spawnSync('prlimit', ['--fsize=1048576', process.execPath, BIN, 'restore', rep, '--volume', 'a', '--target', `a=${join(dir, 'small', 'a.img')}`, '--json'], { encoding: 'utf8' });
    expect(limited).toExit(1);
    const err = JSON.parse(limited.stdout).error;
    expect(err).toMatchObject({ code: 'TARGET_NOT_USABLE', message: expect.stringMatching(/EFBIG/) });
    expect(err.hint).toMatch(/largest file/);
    expect(readdirSync(join(dir, 'small'))).toEqual([]);
  });
});
