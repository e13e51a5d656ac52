import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JshipError, isJshipError } from '../../src/core/errors.js';
import { callOwner } from '../../src/owner/control-client.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { checkZstdLevel } from '../../src/tape/export-request.js';
import { BIN, jshipJson, jshipProc, makeGroup, MiB, tempDir } from '../helpers.js';

const WORDS = ['alpha', 'beta', 'gamma', 'delta', 'journal', 'tape', 'volume', 'restore', 'marker', 'segment', 'replica', 'export'];

/** 4 MiB of log-like text: zstd -1 makes it about half the size zstd --fast=7 does. */
function text(): Buffer {
  let s = '';
  let x = 12345;
  for (let i = 0; s.length < 4 * MiB; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    s += `${i} ${WORDS[x % 12]} ${WORDS[(x >> 4) % 12]} wrote ${x % 100000} bytes at offset ${(x * 7) % MiB}\n`;
  }
  return Buffer.from(s.slice(0, 4 * MiB));
}

/** A group whose volume v (8 MiB) got the text at 1 MiB; returns its directory. */
async function groupWithText(dir: string): Promise<string> {
  const g = await makeGroup(dir, { v: 8 * MiB }, { journalSize: 16 * MiB });
  const group = await openSiteGroup(g);
  try {
    await group.write('v', MiB, text());
  } finally {
    await group.close();
  }
  return g;
}

const tapeOf = (dir: string): string => join(dir, readdirSync(dir).find((n) => n.endsWith('.tar.zst')) as string);

describe('export --zstd-level', () => {
  const dir = tempDir();

  it('takes whole numbers from -7 to -1 and 1 to 19, and names the flag otherwise', () => {
    for (const n of [-7, -1, 1, 3, 19]) expect(checkZstdLevel(n)).toBe(n);
    for (const n of [0, -8, 20, 1.5, Number.NaN]) {
      try {
        checkZstdLevel(n);
        expect.unreachable(`level ${n} was taken`);
      } catch (e) {
        expect(isJshipError(e, 'USAGE')).toBe(true);
        expect((e as JshipError).render((p) => `--${p}`).message).toMatch(/--zstdLevel/);
      }
    }
  });

  it('refuses a bad level on the command line before anything is written (exit 2)', async () => {
    const g = await makeGroup(join(dir, 'bad'), { v: MiB });
    for (const level of ['20', '0', 'fast', '1.5']) {
      const r = spawnSync(process.execPath, [BIN, 'export', g, '--to', join(dir, 'bad', 'tapes') + '/', '--zstd-level', level], { encoding: 'utf8' });
      expect(r).toExit(2);
      expect(r.stderr).toMatch(/--zstd-level/);
    }
    expect(readdirSync(join(dir, 'bad'))).not.toContain('tapes');
  });

  it('reaches the compressor, in the process and through the owner; the tapes pass zstd -t and tar, and restore the same bytes', async () => {
    // The same data exported three ways: the default level, --fast=7 here, --fast=7 through jship serve.
    const plain = await groupWithText(join(dir, 'plain'));
    const fast = await groupWithText(join(dir, 'fast'));
    const owned = await groupWithText(join(dir, 'owned'));
    const out = (name: string): string => `${join(dir, name, 'tapes')}/`;
    const a = jshipJson('export', plain, '--to', out('plain'));
    expect(a).toExit(0);
    const b = jshipJson('export', fast, '--to', out('fast'), '--zstd-level', '-7');
    expect(b).toExit(0);
    const srv = await jshipProc('serve', owned, '--socket', join(dir, 'owned', 's.sock'));
    let c;
    try {
      // A forged request is checked by the owner too.
      const locked = new JshipError('GROUP_LOCKED', 'locked');
      await expect(callOwner(owned, 'export', { to: out('owned'), zstdLevel: 'fast' }, locked)).rejects.toMatchObject({ code: 'CONTROL_PROTOCOL' });
      await expect(callOwner(owned, 'export', { to: out('owned'), zstdLevel: 40 }, locked)).rejects.toMatchObject({ code: 'USAGE' });
      c = jshipJson('export', owned, '--to', out('owned'), '--zstd-level=-7');
      expect(c).toExit(0);
    } finally {
      expect(await srv.stop()).toBe(0);
    }
    expect(a.out.rawBytes).toBe(b.out.rawBytes);
    // Level 1 makes about half the bytes of --fast=7 on this text; the same level gives the same frames either way.
    expect(a.out.tapeBytes * 1.5).toBeLessThan(b.out.tapeBytes);
    expect(Math.abs(c.out.tapeBytes - b.out.tapeBytes)).toBeLessThan(4096);
    for (const name of ['fast', 'owned']) {
      const tape = tapeOf(out(name));
      execFileSync('zstd', ['-tq', tape]);
      expect(execFileSync('tar', ['--zstd', '-tf', tape], { encoding: 'utf8' })).toMatch(/segments\/00000001\.jrs/);
      const rep = join(dir, name, 'rep');
      const imp = jshipJson('import', rep, out(name));
      expect(imp).toExit(0);
      const target = join(dir, name, 'restored.img');
      const res = jshipJson('restore', rep, '--target', target);
      expect(res).toExit(0);
      expect(readFileSync(target).equals(readFileSync(join(dir, name, 'v.img')))).toBe(true);
    }
  });
});

/** The link tapes a replica stored. */
const storedTapes = (rep: string): string[] => readdirSync(rep, { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith('.tar.zst'))
  .map((e) => join(e.parentPath, e.name));

describe('the direct link\'s zstd level (link serve and link push --zstd-level, serve --link-zstd-level)', () => {
  const dir = tempDir();

  it('refuses a bad level, and a link setting with no link, naming the flag (exit 2), and serves nothing', async () => {
    const g = await makeGroup(join(dir, 'bad'), { v: MiB });
    const sock = join(dir, 'bad', 's.sock');
    const cases: Array<[string[], RegExp]> = [
      [['link', 'serve', g, '--listen', '127.0.0.1:0', '--zstd-level', '20'], /--zstd-level 20/],
      [['link', 'serve', g, '--listen', '127.0.0.1:0', '--zstd-level', 'fast'], /--zstd-level fast/],
      [['link', 'push', g, '--to', '127.0.0.1:1', '--zstd-level', '0'], /--zstd-level 0/],
      [['serve', g, '--socket', sock, '--link-listen', '127.0.0.1:0', '--link-zstd-level', '-8'], /--link-zstd-level -8/],
      [['serve', g, '--socket', sock, '--link-zstd-level', '3'], /--link-zstd-level is a setting of the direct link/],
      [['serve', g, '--socket', sock, '--link-bwlimit', '10M'], /--link-bwlimit is a setting of the direct link/],
    ];
    for (const [args, message] of cases) {
      // A command that took the setting would serve until stopped: killed after a minute, it fails here instead of hanging.
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, `${args.join(' ')}: ${r.signal ?? ''} ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect(readdirSync(join(dir, 'bad'))).not.toContain('s.sock');
  });

  it('reaches the link\'s compressor, from link serve and from serve; the replica restores the same bytes', async () => {
    const pulled = async (name: string, serveArgs: (g: string) => string[], at: (ready: any) => string): Promise<{ rep: string; bytes: number }> => {
      const g = await groupWithText(join(dir, name));
      const srv = await jshipProc(...serveArgs(g));
      const rep = join(dir, name, 'rep');
      try {
        const p = spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', at(srv.ready), '--psk', join(g, 'link.key'), '--name', 'site-b', '--once'], { encoding: 'utf8', timeout: 100_000 });
        expect(p.status, `${p.signal ?? ''} ${p.stderr}`).toBe(0);
      } finally {
        expect(await srv.stop()).toBe(0);
      }
      return { rep, bytes: storedTapes(rep).reduce((n, t) => n + statSync(t).size, 0) };
    };
    const plain = await pulled('lplain', (g) => ['link', 'serve', g, '--listen', '127.0.0.1:0'], (r) => r.listening);
    const fast = await pulled('lfast', (g) => ['link', 'serve', g, '--listen', '127.0.0.1:0', '--zstd-level', '-7'], (r) => r.listening);
    const owned = await pulled('lowned', (g) => ['serve', g, '--socket', join(g, 's.sock'), '--link-listen', '127.0.0.1:0', '--link-zstd-level=-7'], (r) => r.link);
    // Level 1 stores about half the bytes of --fast=7 on this text, whichever process serves the link.
    expect(plain.bytes * 1.5).toBeLessThan(fast.bytes);
    expect(plain.bytes * 1.5).toBeLessThan(owned.bytes);
    for (const { rep } of [fast, owned]) {
      for (const tape of storedTapes(rep)) execFileSync('zstd', ['-tq', tape]);
      const v = jshipJson('verify', ...storedTapes(rep));
      expect(v).toExit(0);
      const target = join(rep, '..', 'restored.img');
      const res = jshipJson('restore', rep, '--target', target);
      expect(res).toExit(0);
      expect(readFileSync(target).equals(readFileSync(join(rep, '..', 'v.img')))).toBe(true);
    }
  }, 120_000);
});
