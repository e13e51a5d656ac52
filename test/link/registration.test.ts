import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { BIN, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { client, serve } from '../nbd/helpers.js';
import { LinkPrimary } from '../../src/link/link-primary.js';
import { dial } from '../../src/link/dial.js';
import { parseHostPort } from '../../src/io/sockets.js';
import { MessageType } from '../../src/link/frame.js';
import { decodeError, expect as expectType, message } from '../../src/link/messages.js';
import { readRegistry } from '../../src/link/registry.js';
import { writeMixed } from '../tape/helpers.js';
import { events, linkedGroup, until } from './helpers.js';

describe('who pins the primary\'s journal', () => {
  const dir = tempDir();

  it('a pull refused at first contact leaves no secondary registered; one that stored its first tape stays', async () => {
    const g = await makeGroup(dir, { a: 2 * MiB }, { journalSize: 16 * MiB });
    const key = groupPaths(g).linkKey;
    const srv = await serve(g, '--link-listen', '127.0.0.1:0');
    const from = (srv.ready as any).link as string;
    const pull = (rep: string, name: string) => spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', from, '--psk', key, '--name', name, '--once', '--json'], { encoding: 'utf8', timeout: 120_000 });
    try {
      client('qemu-io', '-f', 'raw', srv.ready.exports[0]!.uri, '-c', 'write -P 0x01 0 64k');
      const junk = join(dir, 'junk');
      mkdirSync(junk);
      writeFileSync(join(junk, 'f'), 'x');
      const refused = pull(junk, 'junk');
      expect(refused).toExit(1);
      expect(refused.stdout).toMatch(/REPLICA_NOT_EMPTY/);
      expect(jshipJson('status', g).out.link).toEqual([]);
      const ok = pull(join(dir, 'rep'), 'site-b');
      expect(ok).toExit(0);
      expect(jshipJson('status', g).out.link.map((s: { name: string }) => s.name)).toEqual(['site-b']);
    } finally {
      expect((await srv.stop())).toExit(0);
    }
  });
});

describe('a secondary that never confirms a tape', () => {
  const dir = tempDir();

  it('is unregistered when its first session ends before its first confirmation', async () => {
    const { group, key } = await linkedGroup(dir, { a: 1 * MiB }, { journalSize: 8 * MiB, chunkSize: 64 * 1024 });
    await writeMixed(group, 20, 1);
    const ev = events();
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log });
    try {
      const ch = await dial(parseHostPort(primary.address as string, 'x'), key, group.config.groupId);
      await ch.send(message(MessageType.Hello, { role: 'secondary', groupId: null, name: 'vanishes', held: null, mode: 'pull' }));
      expect((await ch.next(30_000)).type).toBe(MessageType.Hello);
      expect((await readRegistry(group.dir)).secondaries.map((s) => s.name)).toEqual(['vanishes']);
      ch.destroy();
      await until('the registration to go', () => ev.all.some((e) => e.event === 'secondary-unregistered'));
      expect((await readRegistry(group.dir)).secondaries).toEqual([]);
    } finally {
      await primary.stop();
      await group.close();
    }
  });
});

describe('a secondary back at once', () => {
  const dir = tempDir();

  it('is not refused for the session of the connection it has just closed (link pull --once run again)', async () => {
    const { group, key } = await linkedGroup(dir, { a: 1 * MiB }, { journalSize: 8 * MiB, chunkSize: 64 * 1024 });
    await writeMixed(group, 20, 1);
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log });
    try {
      const from = parseHostPort(primary.address as string, 'x');
      // Each connection closed, the next one opened at once: before, the primary was often still ending the
      // last one's session ("secondary \"back\" is connected already").
      for (let i = 0; i < 8; i++) {
        const ch = await dial(from, key, group.config.groupId);
        await ch.send(message(MessageType.Hello, { role: 'secondary', groupId: null, name: 'back', held: null, mode: 'pull' }));
        const f = await ch.next(30_000);
        expectType(f, MessageType.Hello);
        ch.destroy();
      }
      // A connection still open is refused as before: one connection per secondary.
      const first = await dial(from, key, group.config.groupId);
      await first.send(message(MessageType.Hello, { role: 'secondary', groupId: null, name: 'back', held: null, mode: 'pull' }));
      expectType(await first.next(30_000), MessageType.Hello);
      const second = await dial(from, key, group.config.groupId);
      await second.send(message(MessageType.Hello, { role: 'secondary', groupId: null, name: 'back', held: null, mode: 'pull' }));
      const refused = await second.next(30_000);
      expect(refused.type).toBe(MessageType.Error);
      expect(decodeError(refused).message).toMatch(/secondary "back" is connected already/);
      first.destroy();
      second.destroy();
    } finally {
      await primary.stop();
      await group.close();
    }
  });
});

