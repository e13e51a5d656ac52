import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { groupPaths } from '../../src/journal/group-files.js';
import { LinkPrimary } from '../../src/link/link-primary.js';
import { runPull } from '../../src/link/link-secondary.js';
import { dial } from '../../src/link/dial.js';
import { parseHostPort } from '../../src/io/sockets.js';
import { clientOptions } from '../../src/link/link-tls.js';
import { MessageType, encodeFrame } from '../../src/link/frame.js';
import { message } from '../../src/link/messages.js';
import { readRegistry } from '../../src/link/registry.js';
import { JshipError } from '../../src/core/errors.js';
import { MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { writeMixed } from '../tape/helpers.js';
import { events, expectRestoresTo, linkedGroup, snapshot } from './helpers.js';

/** Sends `bytes` over an authenticated connection and returns what came back until the primary closed it. */
function rawSession(port: number, key: Buffer, identity: string, bytes: Buffer[]): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...clientOptions(key, identity) }, () => { for (const b of bytes) s.write(b); });
    let got = Buffer.alloc(0);
    s.on('data', (c: Buffer) => { got = Buffer.concat([got, c]); });
    s.on('error', () => undefined);
    s.on('close', () => resolve(got.toString('latin1')));
  });
}

function plainSession(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}

describe('link security', () => {
  const dir = tempDir();

  it('refuses no credentials, a wrong key, another group, garbage and oversized frames, and a forged resume position, with a logged reason; a good secondary is served meanwhile', async () => {
    const { g, group, key } = await linkedGroup(dir, { a: 1 * MiB }, { journalSize: 8 * MiB, chunkSize: 64 * 1024 });
    const gid = group.config.groupId;
    await writeMixed(group, 30, 1);
    const ev = events();
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log });
    const port = parseHostPort(primary.address as string, 'x').port;
    const from = { host: '127.0.0.1', port };
    const refusals = (): string[] => ev.all.filter((e) => e.event === 'refused' || e.event === 'session-failed').map((e) => String(e.why));
    try {
      // A good secondary, pulling while the bad ones knock.
      const good = join(dir, 'good');
      const goodPull = runPull({ replicaDir: good, name: 'good', key, log: events().log, from, once: true });

      await plainSession(port, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
      await expect(dial(from, randomBytes(32), gid)).rejects.toThrow(/another link key/);
      const wrongGroup = await dial(from, key, '00000000-0000-4000-8000-000000000000').catch((e: JshipError) => e);
      expect((wrongGroup as JshipError).code).toBe('LINK_AUTH');
      expect((wrongGroup as JshipError).message).toMatch(/another group/);
      // Authenticated, then garbage; then a frame header announcing 1 GiB.
      await rawSession(port, key, gid, [randomBytes(64)]);
      const big = encodeFrame(MessageType.Hello, Buffer.from('{}'));
      big.writeUInt32LE(1 << 30, 8);
      await rawSession(port, key, gid, [big]);
      // A forged resume position: a tape this primary never sent.
      const reply = await rawSession(port, key, gid, [message(MessageType.Hello, { role: 'secondary', groupId: gid, name: 'mallory', held: { serial: 9, sha256: 'c'.repeat(64) }, mode: 'pull' })]);
      expect(reply).toMatch(/LINK_POSITION/);
      expect(reply).not.toMatch(/TapeBegin|jship-label/);
      // A hello claiming another group, over a good key.
      const foreign = await rawSession(port, key, gid, [message(MessageType.Hello, { role: 'secondary', groupId: '11111111-1111-4111-8111-111111111111', name: 'x', held: null, mode: 'pull' })]);
      expect(foreign).toMatch(/LINK_FOREIGN/);

      const got = await goodPull;
      expect(got.tapes).toBeGreaterThan(0);
      const s = await snapshot(group, dir, 's');
      await expectRestoresTo(good, dir, s, 'good');
      // Refusals are logged as the server sees them: give the last ones a moment.
      const wanted = [/does not speak TLS/, /another link key/, /another group/, /larger than the limit/, /secondary "mallory" says/];
      for (let i = 0; i < 100 && !wanted.every((w) => w.test(refusals().join('\n'))); i++) await new Promise((r) => setTimeout(r, 50));
      const why = refusals().join('\n');
      expect(why).toMatch(/does not speak TLS/);
      expect(why).toMatch(/another link key/);
      expect(why).toMatch(/another group/);
      expect(why).toMatch(/bad frame magic|not a secondary|malformed/);
      expect(why).toMatch(/larger than the limit/);
      expect(why).toMatch(/secondary "mallory" says it holds link tape 9/);
      // Refused peers were never registered.
      expect((await readRegistry(g)).secondaries.map((x) => x.name)).toEqual(['good']);
    } finally {
      await primary.stop();
      await group.close();
    }
  }, 60_000);

  it('serves nothing without a key, and names what is wrong with a bad one (CLI exit codes)', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    rmSync(groupPaths(g).linkKey);
    const none = jshipJson('link', 'serve', g, '--listen', '127.0.0.1:0');
    expect(none).toExit(1);
    expect(none.out.error.code).toBe('LINK_AUTH');
    expect(none.out.error.hint).toMatch(/Without a key nothing is served/);
    writeFileSync(join(dir, 'bad.key'), 'not hex\n');
    const bad = jshipJson('link', 'pull', join(dir, 'rep'), '--from', '127.0.0.1:1', '--psk', join(dir, 'bad.key'), '--once');
    expect(bad).toExit(1);
    expect(bad.out.error.message).toMatch(/is not a link key/);
    expect(jshipJson('link', 'pull', join(dir, 'rep'), '--from', 'nowhere', '--psk', join(dir, 'bad.key'))).toExit(2);
    expect(jshipJson('link', 'push', g, '--to', '127.0.0.1:1', '--candidates', 'x')).toExit(2);
    expect(jshipJson('link', 'pull', join(dir, 'rep'), '--from', '127.0.0.1:1', '--psk', groupPaths(g).ackKey, '--apply-delay', '5m')).toExit(2);
    expect(jshipJson('link', 'pull', join(dir, 'rep'), '--from', '127.0.0.1:1', '--psk', groupPaths(g).ackKey, '--apply', '--apply-delay', 'soon')).toExit(2);
    const unreachable = jshipJson('link', 'pull', join(dir, 'rep'), '--from', '127.0.0.1:1', '--psk', groupPaths(g).ackKey, '--once');
    expect(unreachable).toExit(1);
    expect(unreachable.out.error.code).toBe('LINK_UNREACHABLE');
    expect(jshipJson('link', 'serve', g, '--listen', '127.0.0.1:0', '--psk', groupPaths(g).ackKey, '--max-tape', 'lots')).toExit(2);
    expect(jshipJson('link', 'push', g, '--to', '127.0.0.1:1', '--psk', groupPaths(g).ackKey, '--failover-after', 'soon')).toExit(2);
    writeFileSync(join(dir, 'sites.json'), '[{"address": "nowhere"}]');
    expect(jshipJson('link', 'push', g, '--candidates', join(dir, 'sites.json'), '--psk', groupPaths(g).ackKey).out.error.message).toMatch(/sites\.json: entry 1: address "nowhere" is not HOST:PORT/);
    // A damaged registry of secondaries is named, and left as it is.
    writeFileSync(join(g, 'link.json'), '{"format": 1, "secondaries": [{"name": "../x"}]}');
    const damaged = jshipJson('status', g);
    expect(damaged).toExit(1);
    expect(damaged.out.error.code).toBe('LINK_REGISTRY_DAMAGED');
    expect(damaged.out.error.message).toMatch(/link\.json is damaged \(secondary entry "\.\.\/x" is malformed\)/);
    expect(readFileSync(join(g, 'link.json'), 'utf8')).toBe('{"format": 1, "secondaries": [{"name": "../x"}]}');
  }, 60_000);
});

