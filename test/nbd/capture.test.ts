import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, jshipJson, makeGroup, nextMillisecond, tempDir } from '../helpers.js';
import { client, serve, untilJournaled } from './helpers.js';

/**
 * The promise of NBD capture: a client writes at T1 < T2 < T3 with a marker
 * in between; tapes exported while the server runs restore the image as it
 * was at T2 and at the marker.
 */

describe('capture through NBD, export while serving, restore to a moment', () => {
  const dir = tempDir();

  it('restore --until T2 and --marker equal the images the client saw', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 64 * MiB });
    const s = await serve(g);
    const uri = s.ready.exports[0]!.uri;
    const tapes = join(dir, 'tapes') + '/';

    // The base is read from the PVOLs by the serving process, through the control socket.
    const base = jshipJson('export', g, '--to', tapes, '--base');
    expect(base).toExit(0);
    expect(base.out.base.scope).toBe('full');

    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x01 0 1M', '-c', 'write -P 0x0f 6M 64k');
    const atMarker = join(dir, 'at-marker.img');
    client('nbdcopy', uri, atMarker);
    const mark = jshipJson('mark', g, 'before-upgrade');
    expect(mark).toExit(0);

    await nextMillisecond();
    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x02 1M 1M', '-c', 'write -f -P 0x22 0 4k', '-c', 'discard 6M 64k');
    const t2 = new Date().toISOString();
    const atT2 = join(dir, 'at-t2.img');
    client('nbdcopy', uri, atT2);
    await nextMillisecond();
    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x03 512k 1M', '-c', 'write -z 4M 1M');

    const status = jshipJson('status', g);
    expect(status).toExit(0);
    expect(status.out.serving.listening).toBe(join(g, 'nbd.sock'));
    expect(status.out.serving.totals.requests).toBeGreaterThan(0);
    expect(status.out.markers).toBe(1);

    // scan asks the server too, which says why it will not: NBD writes are journaled already.
    const scan = jshipJson('scan', g);
    expect(scan).toExit(1);
    expect(scan.out.error.message).toMatch(/served over NBD/);

    const upd = jshipJson('export', g, '--to', tapes);
    expect(upd).toExit(0);
    expect(upd.out.records).toBeGreaterThanOrEqual(8);
    expect((await s.stop())).toExit(0);

    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    const out2 = join(dir, 'out-t2.img');
    const r2 = jshipJson('restore', rep, '--until', t2, '--target', out2);
    expect(r2).toExit(0);
    expect(client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', atT2, out2)).toMatch(/identical/);
    const outM = join(dir, 'out-marker.img');
    expect(jshipJson('restore', rep, '--marker', 'before-upgrade', '--target', outM)).toExit(0);
    expect(readFileSync(outM).equals(readFileSync(atMarker))).toBe(true);
    const outL = join(dir, 'out-latest.img');
    expect(jshipJson('restore', rep, '--target', outL)).toExit(0);
    expect(readFileSync(outL).equals(readFileSync(join(dir, 'a.img')))).toBe(true);
    expect(readFileSync(outL).equals(readFileSync(out2))).toBe(false);
  });

  it('a base exported while fio writes: the restore of the latest point equals the volume', async () => {
    const g = await makeGroup(dir, { a: 16 * MiB }, { journalSize: 256 * MiB });
    const s = await serve(g);
    const uri = s.ready.exports[0]!.uri;
    const fio = spawn('fio', ['--name=load', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
      '--size=16M', '--time_based', '--runtime=30'], { stdio: 'ignore' });
    const fioDone = new Promise((r) => fio.once('close', r));
    try {
      // The base is taken while fio writes: once it is writing.
      await untilJournaled(g, 200);
      const tapes = join(dir, 'tapes') + '/';
      const base = jshipJson('export', g, '--to', tapes, '--base');
      expect(base).toExit(0);
      const more = jshipJson('export', g, '--to', tapes);
      expect(more).toExit(0);
    } finally {
      fio.kill('SIGTERM');
      await fioDone;
    }
    const last = jshipJson('export', g, '--to', join(dir, 'tapes') + '/', '--allow-empty');
    expect(last).toExit(0);
    expect((await s.stop())).toExit(0);
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, join(dir, 'tapes'))).toExit(0);
    const out = join(dir, 'latest.img');
    const r = jshipJson('restore', rep, '--target', out);
    expect(r).toExit(0);
    expect(readFileSync(out).equals(readFileSync(join(dir, 'a.img')))).toBe(true);
  });
});
