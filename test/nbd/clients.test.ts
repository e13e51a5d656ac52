import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordType } from '../../src/core/record.js';
import { BIN, KiB, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { client, journalReproducesVolumes, serve } from './helpers.js';
import { parseListen } from '../../src/cli/serve.js';

/** The real NBD clients against `jship serve`, each checked against what it wrote and against the journal. */
describe('jship serve with real clients', () => {
  const dir = tempDir();

  it('qemu-io: patterns, zeroes (-u, -n), FUA, discard, flush, aio, map; every write is in the journal in order', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB, b: 1 * MiB }, { journalSize: 32 * MiB });
    const s = await serve(g);
    const uri = s.ready.exports[0]!.uri;
    expect(uri).toBe(`nbd+unix:///a?socket=${join(g, 'nbd.sock')}`);
    const out = client('qemu-io', '-f', 'raw', uri,
      '-c', 'write -P 0xab 0 64k',
      '-c', 'write -z 64k 64k',
      '-c', 'write -z -u 128k 64k',
      '-c', 'write -z -n 192k 64k',
      '-c', 'write -f -P 0x11 256k 4k',
      '-c', 'discard 320k 64k',
      '-c', 'flush',
      '-c', 'aio_write -P 0x22 512k 8k',
      '-c', 'aio_flush',
      '-c', 'read -P 0xab 0 64k',
      '-c', 'read -P 0 64k 192k',
      '-c', 'read -P 0x11 256k 4k',
      '-c', 'read -P 0 320k 64k',
      '-c', 'read -P 0x22 512k 8k',
      '-c', 'map');
    expect(out).not.toMatch(/fail|error/i);
    expect(out).toMatch(/read 8192\/8192 bytes at offset 524288/);
    expect(out).toMatch(/allocated at offset 0/);
    // The default export ("" in the URI) is the first volume.
    client('qemu-io', '-f', 'raw', `nbd+unix:///?socket=${join(g, 'nbd.sock')}`, '-c', 'read -P 0xab 0 64k');
    const stopped = await s.stop();
    expect(stopped).toExit(0);
    expect(stopped.out).toMatchObject({ stopped: true, signal: 'SIGTERM' });
    const { ok, headers } = await journalReproducesVolumes(g);
    expect(ok).toBe(true);
    expect(headers).toEqual([
      { type: RecordType.Update, volume: 0, offset: 0, length: 64 * KiB },
      { type: RecordType.Zero, volume: 0, offset: 64 * KiB, length: 64 * KiB },
      { type: RecordType.Zero, volume: 0, offset: 128 * KiB, length: 64 * KiB },
      { type: RecordType.Zero, volume: 0, offset: 192 * KiB, length: 64 * KiB },
      { type: RecordType.Update, volume: 0, offset: 256 * KiB, length: 4 * KiB },
      { type: RecordType.Trim, volume: 0, offset: 320 * KiB, length: 64 * KiB },
      { type: RecordType.Update, volume: 0, offset: 512 * KiB, length: 8 * KiB },
    ]);
  });

  it('qemu-img convert/compare/info, nbdcopy both ways with several connections, nbdinfo, fio with verify', async () => {
    const g = await makeGroup(dir, { a: 16 * MiB, b: 8 * MiB }, { journalSize: 160 * MiB });
    const s = await serve(g);
    const [a, b] = s.ready.exports as unknown as [{ uri: string }, { uri: string }];
    const src = join(dir, 'src.img');
    writeFileSync(src, Buffer.concat([randomBytes(6 * MiB), Buffer.alloc(4 * MiB), randomBytes(6 * MiB)]));

    client('qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'raw', src, a.uri);
    expect(client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', src, a.uri)).toMatch(/Images are identical/);
    const info = JSON.parse(client('qemu-img', 'info', '--output=json', a.uri));
    expect(info['virtual-size']).toBe(16 * MiB);

    const src2 = join(dir, 'src2.img');
    writeFileSync(src2, randomBytes(16 * MiB));
    client('nbdcopy', '--connections=4', '--requests=16', src2, a.uri);
    const copy = join(dir, 'copy.img');
    client('nbdcopy', '--connections=4', a.uri, copy);
    expect(readFileSync(copy).equals(readFileSync(src2))).toBe(true);

    const list = client('nbdinfo', '--list', '--json', a.uri);
    expect(JSON.parse(list).exports.map((e: { 'export-name': string }) => e['export-name'])).toEqual(['a', 'b']);
    for (const can of ['fua', 'flush', 'trim', 'zero', 'multi-conn', 'fast-zero', 'cache', 'df']) client('nbdinfo', '--can', can, a.uri);
    client('qemu-io', '-f', 'raw', b.uri, '-c', 'write -P 0x5a 0 1M', '-c', 'write -z 256k 512k');
    const map = JSON.parse(client('nbdinfo', '--map', '--json', b.uri)) as Array<{ offset: number; length: number; type: number }>;
    expect(map).toEqual([
      { offset: 0, length: 256 * KiB, type: 0, description: 'data' },
      { offset: 256 * KiB, length: 512 * KiB, type: 2, description: 'zero' },
      { offset: 768 * KiB, length: 256 * KiB, type: 0, description: 'data' },
      { offset: 1 * MiB, length: 7 * MiB, type: 2, description: 'zero' },
    ]);

    const fio = client('fio', '--name=verify', '--ioengine=nbd', `--uri=${b.uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=32',
      '--size=8M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--output-format=json');
    const job = JSON.parse(fio.slice(fio.indexOf('{'))).jobs[0];
    expect(job.error).toBe(0);
    expect(job.write.total_ios).toBe(2048);

    expect((await s.stop())).toExit(0);
    const { ok, headers } = await journalReproducesVolumes(g);
    expect(ok).toBe(true);
    expect(headers.filter((h) => h.volume === 1 && h.type === RecordType.Update).reduce((n, h) => n + h.length, 0)).toBe(1 * MiB + 8 * MiB);
  });

  it('TCP when asked: loopback by default, an ephemeral port, the export named in the URI', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const s = await serve(g, '--listen', '0');
    expect(s.ready.listening).toMatch(/^127\.0\.0\.1:\d+$/);
    const uri = s.ready.exports[0]!.uri;
    expect(uri).toBe(`nbd://${s.ready.listening}/a`);
    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x3c 0 64k', '-c', 'read -P 0x3c 0 64k');
    expect((await s.stop())).toExit(0);
    expect((await journalReproducesVolumes(g)).ok).toBe(true);
  });
});

describe('a group directory too deep for a Unix socket path', () => {
  const dir = tempDir();

  it('serve asks for --socket; with one, mark and status reach it through a control socket in the temporary directory', async () => {
    const deep = join(dir, 'd'.repeat(60), 'e'.repeat(60));
    const g = await makeGroup(deep, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const refused = spawnSync(process.execPath, [BIN, 'serve', g, '--json'], { encoding: 'utf8' });
    expect(refused).toExit(2);
    expect(JSON.parse(refused.stdout).error.hint).toMatch(/--socket/);
    const sock = join(dir, 'n.sock');
    const s = await serve(g, '--socket', sock);
    expect(existsSync(join(g, 'control.path'))).toBe(true);
    client('qemu-io', '-f', 'raw', `nbd+unix:///a?socket=${sock}`, '-c', 'write -P 0x61 0 4k');
    const mark = jshipJson('mark', g, 'deep');
    expect(mark).toExit(0);
    expect(jshipJson('status', g).out.serving.listening).toBe(sock);
    expect((await s.stop())).toExit(0);
    expect(existsSync(join(g, 'control.path'))).toBe(false);
  });
});

describe('--listen parsing', () => {
  const dir = tempDir();

  it('PORT, HOST:PORT, [IPV6]:PORT; anything else is a usage error', () => {
    expect(parseListen('10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseListen('0.0.0.0:10809')).toEqual({ host: '0.0.0.0', port: 10809 });
    expect(parseListen('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
    for (const bad of ['', 'x', '70000', 'host:', ':80', 'a:b:80']) expect(() => parseListen(bad)).toThrow(/--listen/);
  });

  it('--socket with --listen, or a bad --listen, is a usage error before anything is opened', () => {
    for (const args of [['--socket', '/tmp/x.sock', '--listen', '10809'], ['--listen', 'nope']]) {
      const r = spawnSync(process.execPath, [BIN, 'serve', '/nonexistent-group', ...args, '--json'], { encoding: 'utf8' });
      expect(r).toExit(2);
      expect(JSON.parse(r.stdout).error.code).toBe('USAGE');
    }
  });

  it('a --socket in a directory that does not exist is a usage error naming the directory (was EACCES), and the group is left unlocked', async () => {
    const g = await makeGroup(join(dir, 'nodir'), { a: 1 * MiB });
    const r = spawnSync(process.execPath, [BIN, 'serve', g, '--socket', join(dir, 'no', 'such', 's.sock'), '--json'], { encoding: 'utf8' });
    expect(r).toExit(2);
    expect(JSON.parse(r.stdout).error.message).toBe(`cannot listen on ${join(dir, 'no', 'such', 's.sock')}: ${join(dir, 'no', 'such')} does not exist`);
    expect(existsSync(join(g, 'lock'))).toBe(false);
  });
});
