import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, promises as fsp, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { lockVolumeFile } from '../../src/io/volume-file-lock.js';
import type { DirLock } from '../../src/io/dir-lock.js';
import { createGroup, openGroup } from '../../src/index.js';
import { makeGroup, tempDir, MiB } from '../helpers.js';
import { isOpenHere, openAtLockRelease } from '../lock-spies.js';

describe('volumes', () => {
  const dir = tempDir();

  it('creates missing files at their size and concatenates a volume group in order', async () => {
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    const vol = await Volume.open({ name: 'vg', extents: [{ path: a, size: 1 * MiB }, { path: b, size: 2 * MiB }] }, { create: true });
    try {
      expect(vol.size).toBe(3 * MiB);
      expect(vol.extents.map((e) => e.start)).toEqual([0, 1 * MiB]);
      const data = Buffer.alloc(8192);
      for (let i = 0; i < data.length; i++) data[i] = i % 251;
      await vol.write(1 * MiB - 4096, data); // spans the boundary
      await vol.sync();
      expect((await vol.read(1 * MiB - 4096, 8192)).equals(data)).toBe(true);
      expect(readFileSync(a).subarray(1 * MiB - 4096).equals(data.subarray(0, 4096))).toBe(true);
      expect(readFileSync(b).subarray(0, 4096).equals(data.subarray(4096))).toBe(true);
      await vol.writeZeroes(1 * MiB - 100, 200);
      expect((await vol.read(1 * MiB - 100, 200)).every((x) => x === 0)).toBe(true);
      expect(() => vol.checkRange(3 * MiB - 1, 2)).toThrowError(expect.objectContaining({ code: 'VOLUME_OUT_OF_RANGE' }));
      await expect(vol.write(-1, data)).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_OUT_OF_RANGE' }));
    } finally {
      await vol.close();
    }
    expect(statSync(b).size).toBe(2 * MiB);
  });

  it('writes more than 1 MiB, in one buffer or in pieces, across two extents, each byte where it belongs', async () => {
    const vol = await Volume.open({ name: 'big', extents: [{ path: join(dir, 'x.img'), size: 3 * MiB }, { path: join(dir, 'y.img'), size: 3 * MiB }] }, { create: true });
    try {
      const data = Buffer.alloc(4 * MiB + 333);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 12)) % 253;
      await vol.write(1 * MiB + 5, data);
      expect((await vol.read(1 * MiB + 5, data.length)).equals(data)).toBe(true);
      // The same bytes as pieces of odd sizes (a pwritev), over the first write's bytes shifted by one.
      const pieces = [data.subarray(0, 700_001), data.subarray(700_001, 2_900_000), data.subarray(2_900_000)];
      await vol.write(1 * MiB + 6, pieces);
      expect((await vol.read(1 * MiB + 6, data.length)).equals(data)).toBe(true);
      expect((await vol.read(1 * MiB + 5, 1))[0]).toBe(data[0]);
    } finally {
      await vol.close();
    }
  });

  it('a file is the volume of one group at a time, under any name: two groups on one file wrote over each other', async () => {
    const file = join(dir, 'shared.img');
    const g1 = await makeGroup(join(dir, 'one'), { a: 1 * MiB });
    // The second group names the first's file through a hard link (a symbolic link or another path alike).
    linkSync(join(dir, 'one', 'a.img'), file);
    const g2 = join(dir, 'two');
    await createGroup(g2, { volumes: [{ name: 'b', extents: [{ path: file }] }], journalSize: 4 * MiB });
    const first = await openGroup(g1, { checkpointIntervalMs: 0 });
    try {
      await expect(openGroup(g2, { checkpointIntervalMs: 0 })).rejects.toThrowError(expect.objectContaining({
        code: 'VOLUME_NOT_USABLE',
        message: expect.stringMatching(new RegExp(`volume "b": ${file} is in use by process ${process.pid}`)),
        hint: expect.stringMatching(/belongs to one group/),
      }));
      // Nothing of the second group stays held: the first group's writes go on, and its file is its own.
      await first.write('a', 0, Buffer.alloc(4096, 1));
    } finally {
      await first.close();
    }
    // Once the first lets go, the second may open it (a file moved from one group to another).
    const second = await openGroup(g2, { checkpointIntervalMs: 0 });
    await second.close();
    // A group config naming one file twice is refused too.
    const twice = await Volume.open({ name: 'x', extents: [{ path: file }, { path: join(dir, 'one', 'a.img') }] }).then(async (v) => {
      await v.close();
      return 'opened';
    }, (e: { code: string }) => e.code);
    expect(twice).toBe('VOLUME_NOT_USABLE');
    // A read-only open (a scan's reader, a check) takes no lock.
    const held = await Volume.open({ name: 'a', extents: [{ path: file }] });
    try {
      const ro = await Volume.open({ name: 'a', extents: [{ path: file }] }, { readOnly: true });
      await ro.close();
    } finally {
      await held.close();
    }
  });

  it('a volume lets go of its file locks before it closes its files: once closed and removed, the inode may go to a new file at once', async () => {
    const path = join(dir, 'order.img');
    const vol = await Volume.open({ name: 'v', extents: [{ path, size: MiB }] }, { create: true });
    expect(await openAtLockRelease(path, () => vol.close())).toEqual([true]);
    expect(isOpenHere(path)).toBe(false);
  });

  it('a lock still held for a removed file does not refuse a new file given its inode (a handle closed on garbage collection, its file removed)', async () => {
    const sub = join(dir, 'reuse');
    mkdirSync(sub);
    // A live process (this one) holds the lock of a file whose handle it let go of; the file is removed, and the
    // next file made takes its inode (ext4 gives a freed inode back at once; tried a few times in case it does not).
    let held: DirLock | undefined;
    let reused = false;
    for (let i = 0; i < 20 && !reused; i++) {
      const old = join(sub, `old-${i}.img`);
      writeFileSync(old, Buffer.alloc(4096));
      const h = await fsp.open(old, 'r+');
      await held?.release();
      held = await lockVolumeFile(h, `volume "gone": ${old}`);
      const ino = (await h.stat()).ino;
      await h.close();
      rmSync(old);
      writeFileSync(join(sub, 'new.img'), Buffer.alloc(4096));
      reused = statSync(join(sub, 'new.img')).ino === ino;
      if (!reused) rmSync(join(sub, 'new.img'));
    }
    try {
      expect(reused, 'the file system gave no freed inode to a new file: the case cannot be made here').toBe(true);
      const vol = await Volume.open({ name: 'v', extents: [{ path: join(sub, 'new.img') }] });
      try {
        // The new file's own lock still keeps a second writer out.
        await expect(Volume.open({ name: 'w', extents: [{ path: join(sub, 'new.img') }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_NOT_USABLE' }));
      } finally {
        await vol.close();
      }
    } finally {
      await held?.release();
    }
  });

  it('refuses missing, wrong-size, empty and unusable paths with clear errors', async () => {
    await expect(Volume.open({ name: 'x', extents: [{ path: join(dir, 'nope.img') }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_NOT_FOUND', message: expect.stringMatching(/nope\.img does not exist/) }));
    writeFileSync(join(dir, 'small.img'), Buffer.alloc(4096));
    await expect(Volume.open({ name: 'x', extents: [{ path: join(dir, 'small.img'), size: 8192 }] }, { create: true })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_SIZE_MISMATCH' }));
    writeFileSync(join(dir, 'empty.img'), '');
    await expect(Volume.open({ name: 'x', extents: [{ path: join(dir, 'empty.img') }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_NOT_USABLE' }));
    mkdirSync(join(dir, 'adir'));
    await expect(Volume.open({ name: 'x', extents: [{ path: join(dir, 'adir') }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_NOT_USABLE' }));
    await expect(Volume.open({ name: 'x', extents: [{ path: join(dir, 'small.img', 'under-a-file') }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_NOT_USABLE' }));
    await expect(Volume.open({ name: 'x', extents: [{ path: '/dev/null' }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_NOT_USABLE' }));
  });

  it('opens a block device (a loop device) and finds its size', async () => {
    const backing = join(dir, 'loop.img');
    writeFileSync(backing, Buffer.alloc(3 * MiB));
    const dev = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
    try {
      const vol = await Volume.open({ name: 'dev', extents: [{ path: dev }] });
      try {
        // One writer: a second group over the same device (or a restore into it) was let in and wrote beside the first.
        const second = await Volume.open({ name: 'other', extents: [{ path: dev }] }).then(async (v) => { await v.close(); return null; }, (e: unknown) => e);
        expect(second).toMatchObject({ code: 'VOLUME_NOT_USABLE', hint: expect.stringMatching(/one writer/) });
        expect((second as Error).message).toMatch(/EBUSY/);
        const reader = await Volume.open({ name: 'dev', extents: [{ path: dev }] }, { readOnly: true });
        await reader.close();
        expect(vol.size).toBe(3 * MiB);
        expect(vol.extents[0]?.blockDevice).toBe(true);
        await vol.write(4096, Buffer.alloc(4096, 0x5a));
        await vol.sync();
        expect((await vol.read(4096, 4096)).every((x) => x === 0x5a)).toBe(true);
      } finally {
        await vol.close();
      }
      await expect(Volume.open({ name: 'dev', extents: [{ path: dev, size: 1 * MiB }] })).rejects.toThrowError(expect.objectContaining({ code: 'VOLUME_SIZE_MISMATCH' }));
    } finally {
      execFileSync('losetup', ['-d', dev]);
    }
    expect(readFileSync(backing).subarray(4096, 8192).every((x) => x === 0x5a)).toBe(true);
  });
});
