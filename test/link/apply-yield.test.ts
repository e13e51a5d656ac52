import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { DirLock } from '../../src/io/dir-lock.js';
import { BIN, MiB, makeGroup, tempDir } from '../helpers.js';
import { client, serve } from '../nbd/helpers.js';
import { linkProc, until } from './helpers.js';

describe('a pulling secondary shares its replica', () => {
  const dir = tempDir();

  // The receiver lets go of the replica between two tapes when it applies them, and holds it from tape to
  // tape when it does not: either way, a restore that asks gets it between two tapes, however fast they come.
  it.each([
    { mode: '--apply', stored: 'applied', rounds: 8 },
    { mode: 'without --apply', stored: 'tape-stored', rounds: 4 },
  ])('restores run while link pull $mode stores tapes back to back (they wait for it, never GROUP_LOCKED); leftovers of a killed receiver go at its start', async ({ mode, stored, rounds }) => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 32 * MiB });
    const key = groupPaths(g).linkKey;
    const srv = await serve(g, '--link-listen', '127.0.0.1:0');
    const rep = join(dir, `rep-${stored}`);
    const uri = srv.ready.exports[0]!.uri;
    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x01 0 1M');
    // A receiver killed mid-tape left this (the replica is created by the first pull).
    const first = spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', (srv.ready as any).link, '--psk', key, '--name', 'site-b', '--once', '--json'], { encoding: 'utf8' });
    expect(first).toExit(0);
    writeFileSync(join(rep, 'tapes', '.incoming-0123456789ab'), 'half a tape');
    const pull = await linkProc('pull', rep, '--from', (srv.ready as any).link, '--psk', key, '--name', 'site-b', ...(mode === '--apply' ? ['--apply'] : []));
    try {
      await until('the receiver to start', () => pull.events.some((e) => e.event === 'connected'));
      expect(readdirSync(join(rep, 'tapes')).filter((n) => n.startsWith('.incoming-'))).toEqual([]);
      // Writes keep arriving (rate-limited fio): the receiver stores (and applies) tapes all along.
      const fio = spawn('fio', ['--name=load', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=4',
        '--size=4M', '--rate_iops=300', '--time_based', '--runtime=600'], { stdio: 'ignore' });
      const fioDone = new Promise((r) => fio.once('close', r));
      try {
        const count = (): number => pull.events.filter((e) => e.event === stored).length;
        for (let i = 0; i < rounds; i++) {
          const before = count();
          await until(`the next ${stored}`, () => count() > before, 60_000);
          const r = spawnSync(process.execPath, [BIN, 'restore', rep, '--target', join(dir, `x-${stored}-${i}/`), '--json'], { encoding: 'utf8', timeout: 60_000 });
          expect(r.status, `restore ${i}: ${r.stdout} ${r.stderr}`).toBe(0);
        }
      } finally {
        fio.kill('SIGTERM');
        await fioDone;
      }
    } finally {
      // Soft: a failure above is reported, not hidden behind these.
      expect.soft(await pull.stop()).toBe(0);
      expect.soft((await srv.stop()).code).toBe(0);
    }
  });

  it.each(['pull', 'receive'])('link %s waiting for a replica another process holds stops at SIGTERM, at once and cleanly, and leaves the holder alone', async (verb) => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const key = groupPaths(g).linkKey;
    const rep = join(dir, `rep-held-${verb}`);
    let srv: Awaited<ReturnType<typeof serve>>;
    let secondary: Awaited<ReturnType<typeof linkProc>>;
    if (verb === 'pull') {
      srv = await serve(g, '--link-listen', '127.0.0.1:0');
      secondary = await linkProc('pull', rep, '--from', (srv.ready as any).link, '--psk', key, '--name', 'site-b', '--apply');
    } else {
      secondary = await linkProc('receive', rep, '--listen', '127.0.0.1:0', '--psk', key, '--name', 'site-c', '--apply');
      srv = await serve(g, '--link-to', secondary.ready.listening);
    }
    try {
      await until('the receiver to connect', () => secondary.events.some((e) => e.event === 'connected'));
      // A long restore, say, takes the replica; the next tape finds it held, and the receiver waits for it.
      const held = await DirLock.acquire(join(rep, 'lock'), 'replica');
      try {
        client('qemu-io', '-f', 'raw', srv.ready.exports[0]!.uri, '-c', 'write -P 0x02 0 64k');
        await until('the receiver to wait', () => secondary.events.some((e) => e.event === 'waiting'));
        // Before, it kept waiting for the holder through the SIGTERM (and would until the holder let go).
        const stopped = await Promise.race([secondary.stop(), new Promise((r) => setTimeout(() => r('still running 60 s after SIGTERM'), 60_000))]);
        if (stopped !== 0) await secondary.kill();
        expect(stopped).toBe(0);
        expect(secondary.events.at(-1)).toMatchObject({ event: 'stopped', signal: 'SIGTERM' });
        expect(readFileSync(join(rep, 'lock'), 'utf8')).toContain(`"pid":${process.pid}`);
      } finally {
        await held.release();
      }
    } finally {
      await secondary.kill();
      expect.soft((await srv.stop()).code).toBe(0);
    }
  });

  // Started while the replica is held, a receiver waits for it before it is ready: a service manager's stop
  // then ended it by the signal's default action, without a word (or, with --once, without saying what is left).
  it.each([
    { name: 'pull', verb: 'pull', args: ['--from', '127.0.0.1:9'], code: 0, last: { event: 'stopped', signal: 'SIGTERM' } },
    { name: 'pull --once', verb: 'pull', args: ['--from', '127.0.0.1:9', '--once'], code: 143, last: { error: { code: 'INTERRUPTED' } } },
    { name: 'receive', verb: 'receive', args: ['--listen', '127.0.0.1:0'], code: 0, last: { event: 'stopped', signal: 'SIGTERM' } },
  ])('link $name started while another process holds the replica stops at SIGTERM before it is ready, and says so', async ({ verb, args, code, last }) => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const key = groupPaths(g).linkKey;
    const rep = join(dir, `rep-early-${verb}-${args.length}`);
    const srv = await serve(g, '--link-listen', '127.0.0.1:0');
    try {
      const first = spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', (srv.ready as any).link, '--psk', key, '--name', 'site-b', '--once', '--json'], { encoding: 'utf8' });
      expect(first).toExit(0);
    } finally {
      expect.soft((await srv.stop()).code).toBe(0);
    }
    const held = await DirLock.acquire(join(rep, 'lock'), 'replica');
    const p = spawn(process.execPath, [BIN, 'link', verb, rep, ...args, '--psk', key, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const exited = new Promise<number | string>((r) => p.once('close', (c, s) => r(c ?? s ?? 'unknown')));
      const lines: any[] = [];
      let out = '';
      p.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const nl = out.lastIndexOf('\n');
        for (const l of out.slice(0, nl + 1).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        out = out.slice(nl + 1);
      });
      await until('the receiver to wait for the replica', () => lines.some((e) => e.event === 'waiting'));
      p.kill('SIGTERM');
      const status = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running 60 s after SIGTERM'), 60_000))]);
      expect(status).toBe(code);
      expect(lines.some((e) => e.ready)).toBe(false);
      expect(lines.at(-1)).toMatchObject(last);
      expect(readFileSync(join(rep, 'lock'), 'utf8')).toContain(`"pid":${process.pid}`);
    } finally {
      p.kill('SIGKILL');
      await held.release();
    }
  });
});
