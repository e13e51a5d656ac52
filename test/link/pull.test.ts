import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { LinkPrimary } from '../../src/link/link-primary.js';
import { runPull } from '../../src/link/link-secondary.js';
import { readRegistry } from '../../src/link/registry.js';
import { parseHostPort } from '../../src/io/sockets.js';
import { dial } from '../../src/link/dial.js';
import { MessageType } from '../../src/link/frame.js';
import { Channel } from '../../src/link/channel.js';
import { decodePrimaryHello, decodeStatus, decodeTapeBegin, decodeTapeEnd, expect as expectType, message } from '../../src/link/messages.js';
import { heldPosition } from '../../src/link/secondary-session.js';
import { importLinkStream } from '../../src/replica/import.js';
import { FramePool } from '../../src/tape/frame-pool.js';

import { Replica } from '../../src/replica/replica.js';
import { KiB, MiB, tempDir, toolHash } from '../helpers.js';
import { writeMixed } from '../tape/helpers.js';
import { events, expectRestoresTo, linkedGroup, snapshot, until } from './helpers.js';

describe('link pull (library)', () => {
  const dir = tempDir();

  it('a new secondary gets a base over the link, then updates written while it pulls; restores are exact at chosen times and the journal is purged to what it confirmed', async () => {
    const { g, group, key } = await linkedGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    await writeMixed(group, 60, 1);
    const ev = events();
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: ev.log, maxTapeBytes: 64 * KiB });
    try {
      const from = parseHostPort(primary.address as string, '--from');
      const rep = join(dir, 'rep');
      const sec = events();
      const first = await runPull({ replicaDir: rep, name: 'site-b', key, log: sec.log, from, once: true });
      expect(first.tapes).toBeGreaterThanOrEqual(1);
      const s1 = await snapshot(group, dir, 's1');
      // Writes go on while the secondary pulls, in several sessions.
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing && i < 400; i++) {
          await writeMixed(group, 5, 100 + i);
          if (i === 40) await group.mark('mid');
        }
      })();
      for (let i = 0; i < 3; i++) await runPull({ replicaDir: rep, name: 'site-b', key, log: sec.log, from, once: true });
      writing = false;
      await writer;
      await group.write('b', 4096, randomBytes(8192));
      const s2 = await snapshot(group, dir, 's2');
      await runPull({ replicaDir: rep, name: 'site-b', key, log: sec.log, from, once: true });
      await expectRestoresTo(rep, dir, s1, 's1');
      await expectRestoresTo(rep, dir, s2, 's2');
      // Purge: nothing else pins the journal (no tape exported yet), so journal-out follows the confirmation.
      const reg = await readRegistry(g);
      expect(reg.secondaries.map((s) => s.name)).toEqual(['site-b']);
      expect(BigInt(reg.secondaries[0]!.confirmed.seq)).toBe(s2.seq);
      expect(group.journal.outSeq).toBe(s2.seq + 1n);
      // The replica knows its name at the primary, and its link tapes are catalogued apart from the tape chain.
      const r = await Replica.open(rep);
      expect(r.config.linkName).toBe('site-b');
      expect(r.catalog.tapes().every((t) => t.serial < 0)).toBe(true);
      await r.close();
      expect(JSON.parse(readFileSync(join(rep, 'replica.json'), 'utf8')).groupId).toBe(group.config.groupId);
    } finally {
      await primary.stop();
      await group.close();
    }
  }, 60_000);
});

describe('link status query', () => {
  const dir = tempDir();

  it('answers STATUS_REQUEST with the journal pointers and what the secondary confirmed', async () => {
    const { group, key } = await linkedGroup(dir);
    await writeMixed(group, 20, 1);
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log });
    const ch = await dial(parseHostPort(primary.address as string, 'x'), key, group.config.groupId);
    try {
      await ch.send(message(MessageType.Hello, { role: 'secondary', groupId: group.config.groupId, name: 'asker', held: null, mode: 'pull' }));
      const hello = ch.next(5000);
      expect(decodePrimaryHello(await hello).status.lastSeq).toBe(String(group.journal.writtenSeq - 1n));
      await ch.send(message(MessageType.StatusRequest));
      const reply = await ch.next(5000);
      expect(reply.type).toBe(MessageType.Status);
      const st = decodeStatus(reply);
      expect(st).toMatchObject({ lastSeq: String(group.journal.writtenSeq - 1n), outSeq: String(group.journal.outSeq), inSeq: String(group.journal.writtenSeq) });
      // A new secondary is registered at the last record written: it has that much, and a base to come.
      expect(st.confirmedSeq).toBe(String(group.journal.writtenSeq - 1n));
    } finally {
      ch.close();
      await primary.stop();
      await group.close();
    }
  }, 30_000);
});

describe('link window', () => {
  const dir = tempDir();

  /** Reads one link tape's frames (TAPE_BEGIN … TAPE_END): its serial, bytes and TAPE_END. */
  async function receive(ch: Channel): Promise<{ serial: number; bytes: Buffer; end: ReturnType<typeof decodeTapeEnd> }> {
    const begin = await ch.next(20_000);
    expectType(begin, MessageType.TapeBegin);
    const parts: Buffer[] = [];
    for (;;) {
      const f = await ch.next(20_000);
      if (f.type === MessageType.TapeData) {
        parts.push(Buffer.from(f.payload));
        continue;
      }
      expectType(f, MessageType.TapeEnd);
      return { serial: decodeTapeBegin(begin).serial, bytes: Buffer.concat(parts), end: decodeTapeEnd(f) };
    }
  }

  it('sends the next tape before the last is confirmed (window 2), records both in flight, and a secondary that stored both resumes after the second', async () => {
    const { g, group, key } = await linkedGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    await writeMixed(group, 20, 1);
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log, maxTapeBytes: 64 * KiB });
    const from = parseHostPort(primary.address as string, '--from');
    const rep = join(dir, 'rep');
    const pool = new FramePool({ threads: 1 });
    try {
      // Registered, its base stored and confirmed; then records for several tapes of 64 KiB.
      await runPull({ replicaDir: rep, name: 'site-b', key, log: events().log, from, once: true });
      for (let i = 0; i < 6; i++) await group.write('a', i * 48 * KiB, randomBytes(48 * KiB));
      const snap = await snapshot(group, dir, 'w');
      const confirmedBefore = (await readRegistry(g)).secondaries[0]!.confirmed;
      const pos = await heldPosition(rep, { log: events().log });
      const ch = await dial(from, key, group.config.groupId);
      await ch.send(message(MessageType.Hello, { role: 'secondary', groupId: pos.groupId, name: 'site-b', held: pos.held, mode: 'pull', epochs: pos.epochs, lastSeq: pos.lastSeq, window: 2 }));
      const hello = await ch.next(10_000);
      expectType(hello, MessageType.Hello); // a refusal says why
      expect(decodePrimaryHello(hello).window).toBe(2);
      // Two READs, no CONFIRM between them: both are answered with a tape (stop and wait would refuse the second READ).
      await ch.send(message(MessageType.Read, { waitMs: 0 }));
      const t1 = await receive(ch);
      await ch.send(message(MessageType.Read, { waitMs: 0 }));
      const t2 = await receive(ch);
      expect([t1.serial, t2.serial]).toEqual([confirmedBefore.serial + 1, confirmedBefore.serial + 2]);
      for (const t of [t1, t2]) expect(toolHash(t.bytes)).toBe(t.end.sha256);
      const mid = (await readRegistry(g)).secondaries[0]!;
      expect(mid.confirmed.serial).toBe(confirmedBefore.serial);
      expect([mid.inflight?.serial, mid.inflightNext?.serial]).toEqual([t1.serial, t2.serial]);
      // A third READ while two are in flight is beyond the window: refused, nothing confirmed.
      await ch.send(message(MessageType.Read, { waitMs: 0 }));
      const refused = await ch.next(10_000);
      expect(refused.type).toBe(MessageType.Error);
      ch.close();
      // The secondary stored both (the connection broke before its confirmations): it resumes after the second.
      const r = await Replica.open(rep);
      try {
        for (const t of [t1, t2]) {
          const rep1 = await importLinkStream(r, t.bytes, async function* () { yield t.bytes; }, `link tape ${t.serial}`, { pool, expectSha256: () => t.end.sha256 });
          expect(rep1.outcome, rep1.message).toBe('imported');
        }
      } finally {
        await r.close();
      }
      await runPull({ replicaDir: rep, name: 'site-b', key, log: events().log, from, once: true });
      const after = (await readRegistry(g)).secondaries[0]!;
      expect(after.confirmed.serial).toBeGreaterThanOrEqual(t2.serial);
      expect(after.inflight).toBeNull();
      expect(after.inflightNext).toBeUndefined();
      expect(BigInt(after.confirmed.seq)).toBe(snap.seq);
      await expectRestoresTo(rep, dir, snap, 'w', 'seq');
    } finally {
      await pool.close();
      await primary.stop();
      await group.close();
    }
  }, 60_000);
  it('a stop while the receiver looks whether another process wants the replica ends the pull cleanly: the frame it waited for fails with no one to take it, never as an unhandled rejection (exit 1 under load)', async () => {
    const d = join(dir, 'stop-while-looking');
    const { group, key } = await linkedGroup(d, { a: 1 * MiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log, maxTapeBytes: 64 * KiB });
    const wanted = Object.getOwnPropertyDescriptor(Replica.prototype, 'wanted') as PropertyDescriptor;
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const from = parseHostPort(primary.address as string, '--from');
      const rep = join(d, 'rep');
      await runPull({ replicaDir: rep, name: 'site-b', key, log: events().log, from, once: true });
      await writeMixed(group, 40, 7);
      // The look at the replica's lock is held until the connection is gone (a stop comes while it runs).
      let looking!: () => void;
      const looked = new Promise<void>((r) => { looking = r; });
      let letGo!: () => void;
      const held = new Promise<void>((r) => { letGo = r; });
      Object.defineProperty(Replica.prototype, 'wanted', { configurable: true, value: async () => { looking(); await held; return false; } });
      const stop = new AbortController();
      const pulling = runPull({ replicaDir: rep, name: 'site-b', key, log: events().log, from, signal: stop.signal });
      await looked;
      stop.abort();
      // Long enough for a rejection no one takes to be reported (it is, after the microtasks of a turn).
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      letGo();
      expect((await pulling).status).toBe(null);
      expect(unhandled).toEqual([]);
    } finally {
      Object.defineProperty(Replica.prototype, 'wanted', wanted);
      process.off('unhandledRejection', onUnhandled);
      await primary.stop();
      await group.close();
    }
  });
  it('a secondary that goes away while the primary waits for records for it ends its session there, not at the end of the wait it asked for', async () => {
    const d = join(dir, 'gone-while-waiting');
    const { group, key } = await linkedGroup(d, { a: 256 * KiB }, { journalSize: 8 * MiB, chunkSize: 64 * KiB });
    const log = events();
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: log.log, maxTapeBytes: 64 * KiB });
    try {
      const from = parseHostPort(primary.address as string, '--from');
      const rep = join(d, 'rep');
      await runPull({ replicaDir: rep, name: 'site-b', key, log: events().log, from, once: true });
      const pos = await heldPosition(rep, { log: events().log });
      const ch = await dial(from, key, group.config.groupId);
      await ch.send(message(MessageType.Hello, { role: 'secondary', groupId: pos.groupId, name: 'site-b', held: pos.held, mode: 'pull', epochs: pos.epochs, lastSeq: pos.lastSeq }));
      expectType(await ch.next(10_000), MessageType.Hello);
      // Nothing to send: the primary waits up to a minute for records (as long as a READ may ask), then goes.
      const ended = log.all.length;
      await ch.send(message(MessageType.Read, { waitMs: 60_000 }));
      ch.close();
      // Before, the session (and a server's stop behind it) waited out the minute.
      await until('the session to end', () => log.all.slice(ended).some((e) => e.event === 'disconnected' || e.event === 'session-failed'), 30_000);
    } finally {
      await primary.stop();
      await group.close();
    }
  });
});
