import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { MiB, jshipJson, makeGroup, tempDir, BIN } from '../helpers.js';
import { linkProc, until } from './helpers.js';
import { client, serve } from '../nbd/helpers.js';

describe('link through the CLI and NBD', () => {
  const dir = tempDir();

  it('jship serve with --link-listen and --link-to: writes through qemu-io reach a pulling and a receiving replica; restores compare equal with qemu-img', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB, b: 1 * MiB }, { journalSize: 32 * MiB });
    const key = groupPaths(g).linkKey;
    const pushed = join(dir, 'pushed');
    const recv = await linkProc('receive', pushed, '--listen', '127.0.0.1:0', '--psk', key, '--name', 'site-c', '--apply');
    const srv = await serve(g, '--link-listen', '127.0.0.1:0', '--link-to', recv.ready.listening);
    const linkAt = (srv.ready as any).link as string;
    expect(linkAt).toMatch(/^127\.0\.0\.1:\d+$/);
    const [a, b] = srv.ready.exports.map((e) => e.uri);
    const rep = join(dir, 'pulled');
    const pullOnce = () => spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', linkAt, '--psk', key, '--name', 'site-b', '--once', '--json'], { encoding: 'utf8' });
    try {
      // The pulling secondary registers (and gets its base) before the writes: it holds every point from then on.
      expect(pullOnce()).toExit(0);
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 3M 512k', a!);
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x33 4k 64k', b!);
      expect(jshipJson('mark', g, 'before-change')).toExit(0);
      client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', a!, join(dir, 'a-at-mark.raw'));
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x44 512k 1M', '-c', 'write -z 3M 256k', a!);
      client('qemu-io', '-f', 'raw', '-c', 'discard 4k 4k', b!);
      const pull = pullOnce();
      expect(pull).toExit(0);
      // One JSON line per event, the last one says it caught up.
      const lines = pull.stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines.map((e) => e.event)).toContain('connected');
      expect(lines.filter((e) => e.event === 'tape-stored').length).toBeGreaterThan(0);
      expect(lines.at(-1).event).toBe('caught-up');
      // A pull that runs until SIGTERM: it stores what comes, then stops cleanly (exit 0).
      const running = await linkProc('pull', rep, '--from', linkAt, '--psk', key, '--name', 'site-b');
      client('qemu-io', '-f', 'raw', '-c', 'write -P 0x55 2M 64k', a!);
      await until('the running pull to store a tape', () => running.events.some((e) => e.event === 'tape-stored'));
      expect(await running.stop()).toBe(0);
      expect(running.events.at(-1)?.event).toBe('stopped');
      // Status through the control socket lists both secondaries with their lag.
      await until('site-c to catch up', () => {
        const st = jshipJson('status', g);
        return st.out.link?.find((l: any) => l.name === 'site-c')?.records === 0;
      });
      const st = jshipJson('status', g).out;
      expect(st.link.map((l: any) => l.name).sort()).toEqual(['site-b', 'site-c']);
      expect(st.link.find((l: any) => l.name === 'site-b').records).toBe(0);
      for (const [name, uri] of [['a', a!], ['b', b!]] as const) client('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', uri, join(dir, `${name}-now.raw`));
      const stopped = await srv.stop();
      expect(stopped).toExit(0);
      // The pulled replica: latest and at the marker.
      expect(jshipJson('restore', rep, '--target', join(dir, 'latest/'))).toExit(0);
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(dir, 'latest', 'a.img'), join(dir, 'a-now.raw'));
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(dir, 'latest', 'b.img'), join(dir, 'b-now.raw'));
      expect(jshipJson('restore', rep, '--marker', 'before-change', '--target', join(dir, 'marked/'))).toExit(0);
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(dir, 'marked', 'a.img'), join(dir, 'a-at-mark.raw'));
      // The pushed replica kept its SVOLs applied.
      await until('the receiver to apply', () => recv.events.some((e) => e.event === 'applied' && e.seq === st.sequence.last));
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(pushed, 'svol', 'a.img'), join(dir, 'a-now.raw'));
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', join(pushed, 'svol', 'b.img'), join(dir, 'b-now.raw'));
      expect(recv.events.some((e) => e.event === 'tape-stored')).toBe(true);
      // The replica is "site-b" at its primary: another name is a usage error, caught before any connection.
      const renamed = jshipJson('link', 'pull', rep, '--from', '127.0.0.1:1', '--psk', key, '--name', 'other', '--once');
      expect(renamed).toExit(2);
      expect(renamed.out.error.message).toMatch(/secondary "site-b" at its primary, not "other"/);
    } finally {
      await srv.stop().catch(() => undefined);
      expect(await recv.stop()).toBe(0);
    }
  }, 120_000);
});
