import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordType } from '../../src/core/record.js';
import {
  Cmd, Errno, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, Opt, Rep, encodeOptionHeader, encodeRequest,
} from '../../src/nbd/protocol.js';
import { KiB, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { Raw, client, journalReproducesVolumes, req, serve, u32, untilJournaled } from './helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

describe('misbehaving clients', () => {
  const dir = tempDir();

  it('garbage at every stage ends or errors only that session; acknowledged writes of others are kept', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const s = await serve(g);
    const sock = join(g, 'nbd.sock');

    // A good client that stays connected through all of it.
    const good = new Raw(sock);
    await good.handshake();
    good.send(req(Cmd.WRITE, 1n, 0, 4 * KiB, 1), Buffer.alloc(4 * KiB, 0x61));
    expect(await good.simpleReply()).toEqual({ error: 0, handle: 1n });

    // Handshake stage 1: unknown client flags.
    const c1 = new Raw(sock);
    await c1.read(18);
    c1.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect(await c1.closedByServer()).toBe(true);
    // Stage 2: wrong option magic.
    const c2 = new Raw(sock);
    await c2.read(18);
    c2.send(u32(FLAG_FIXED_NEWSTYLE), Buffer.alloc(16, 0xee));
    expect(await c2.closedByServer()).toBe(true);
    // Stage 3: an option announcing 2 GiB of data.
    const c3 = new Raw(sock);
    await c3.read(18);
    c3.send(u32(FLAG_FIXED_NEWSTYLE), encodeOptionHeader(Opt.GO, 0x7fffffff), Buffer.alloc(100));
    expect(await c3.closedByServer()).toBe(true);
    // Stage 4: malformed option data, an unknown option, STARTTLS: error replies, and the session goes on.
    const c4 = new Raw(sock);
    await c4.read(18);
    c4.send(u32(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    c4.send(encodeOptionHeader(Opt.GO, 3), Buffer.from([0, 0, 9]));
    expect((await c4.optionReply()).type).toBe(Rep.ERR_INVALID);
    c4.send(encodeOptionHeader(99, 2), Buffer.from([1, 2]));
    expect((await c4.optionReply()).type).toBe(Rep.ERR_UNSUP);
    c4.send(encodeOptionHeader(Opt.STARTTLS, 0));
    expect((await c4.optionReply()).type).toBe(Rep.ERR_UNSUP);
    const nope = Buffer.from('nope');
    c4.send(encodeOptionHeader(Opt.INFO, 4 + nope.length + 2), u32(nope.length), nope, Buffer.from([0, 0]));
    const unknown = await c4.optionReply();
    expect(unknown.type).toBe(Rep.ERR_UNKNOWN);
    expect(unknown.data.toString()).toMatch(/no export named "nope"; exports: a/);
    c4.send(encodeOptionHeader(Opt.SET_META_CONTEXT, 0));
    expect((await c4.optionReply()).type).toBe(Rep.ERR_INVALID); // structured replies first
    c4.send(encodeOptionHeader(Opt.LIST, 0));
    const entry = await c4.optionReply();
    expect(entry.type).toBe(Rep.SERVER);
    expect((await c4.optionReply()).type).toBe(Rep.ACK);
    c4.send(encodeOptionHeader(Opt.ABORT, 0));
    expect((await c4.optionReply()).type).toBe(Rep.ACK);
    expect(await c4.closedByServer()).toBe(true);

    // Transmission: errors are replies, the connection stays usable.
    const t = new Raw(sock);
    await t.handshake();
    t.send(req(Cmd.WRITE, 10n, 1 * MiB - 512, 1024), Buffer.alloc(1024, 0x62));
    expect(await t.simpleReply()).toEqual({ error: Errno.ENOSPC, handle: 10n });
    t.send(req(Cmd.READ, 11n, 1 * MiB, 512));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 11n });
    t.send(req(Cmd.TRIM, 12n, 2 * MiB, 512));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 12n });
    t.send(req(42, 13n, 0, 512));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 13n });
    t.send(req(Cmd.READ, 14n, 0, 512, 0x80));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 14n });
    t.send(req(Cmd.WRITE, 15n, 0, 0));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 15n });
    t.send(req(Cmd.BLOCK_STATUS, 16n, 0, 512));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 16n }); // no meta context negotiated
    t.send(req(Cmd.FLUSH, 17n, 5, 0));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 17n });
    // A write larger than the maximum block: its payload is read and dropped, then refused.
    t.send(req(Cmd.WRITE, 18n, 0, 40 * MiB), Buffer.alloc(40 * MiB, 0x63));
    expect(await t.simpleReply()).toEqual({ error: Errno.EINVAL, handle: 18n });
    t.send(req(Cmd.WRITE, 19n, 8 * KiB, 4 * KiB), Buffer.alloc(4 * KiB, 0x64), req(Cmd.FLUSH, 20n, 0, 0));
    expect(await t.simpleReply()).toEqual({ error: 0, handle: 19n });
    expect(await t.simpleReply()).toEqual({ error: 0, handle: 20n });
    // Wrong request magic: nothing after it can be trusted.
    t.send(encodeRequest({ magic: 0x12345678, flags: 0, type: Cmd.READ, handle: 21n, offset: 0n, length: 512 }));
    expect(await t.closedByServer()).toBe(true);

    // Requests after DISC are not executed.
    const d = new Raw(sock);
    await d.handshake();
    d.send(req(Cmd.DISC, 30n, 0, 0), req(Cmd.WRITE, 31n, 16 * KiB, 4 * KiB), Buffer.alloc(4 * KiB, 0x65));
    expect(await d.closedByServer()).toBe(true);
    // A client that goes away in the middle of a payload: that write never happened.
    const m = new Raw(sock);
    await m.handshake();
    m.send(req(Cmd.WRITE, 40n, 32 * KiB, 64 * KiB), Buffer.alloc(10 * KiB, 0x66));
    // Once the kernel has the bytes, closing delivers them, then the end of the stream: the server sees the payload break off.
    await new Promise((r) => m.socket.write(Buffer.alloc(0), r));
    m.socket.destroy();

    // The good client is still served; so is a real one.
    good.send(req(Cmd.READ, 2n, 0, 4 * KiB));
    expect(await good.simpleReply()).toEqual({ error: 0, handle: 2n });
    expect((await good.read(4 * KiB)).every((x) => x === 0x61)).toBe(true);
    client('qemu-io', '-f', 'raw', s.ready.exports[0]!.uri, '-c', 'write -P 0x67 64k 4k', '-c', 'read -P 0x61 0 4k', '-c', 'read -P 0x64 8k 4k');

    expect((await s.stop())).toExit(0);
    expect(s.log()).toMatch(/bad option magic/);
    expect(s.log()).toMatch(/bad request magic/);
    expect(s.log()).toMatch(/closed in the middle of a write payload/);
    const { ok, headers } = await journalReproducesVolumes(g);
    expect(ok).toBe(true);
    expect(headers).toEqual([
      { type: RecordType.Update, volume: 0, offset: 0, length: 4 * KiB },
      { type: RecordType.Update, volume: 0, offset: 8 * KiB, length: 4 * KiB },
      { type: RecordType.Update, volume: 0, offset: 64 * KiB, length: 4 * KiB },
    ]);
  });

  it('SIGTERM under load finishes what was read and exits 0; SIGKILL loses nothing acknowledged', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 64 * MiB });
    const s = await serve(g);
    const fio = spawn('fio', ['--name=load', '--ioengine=nbd', `--uri=${s.ready.exports[0]!.uri}`, '--rw=randwrite', '--bs=4k',
      '--iodepth=32', '--size=8M', '--time_based', '--runtime=20'], { stdio: 'ignore' });
    const fioDone = new Promise((r) => fio.once('close', r));
    await untilJournaled(g, 500);
    const stopped = await s.stop();
    fio.kill('SIGKILL');
    await fioDone;
    expect(stopped).toExit(0);
    expect(stopped.out.requests).toBeGreaterThan(100);
    // Every write the PVOL received is in the journal, in order.
    expect((await journalReproducesVolumes(g)).ok).toBe(true);

    // Kill -9 after acknowledged writes: the next open recovers them. (An export first frees the journal fio may have filled.)
    const freed = jshipJson('export', g, '--to', join(dir, 'tapes') + '/');
    expect(freed).toExit(0);
    const k = await serve(g);
    client('qemu-io', '-f', 'raw', k.ready.exports[0]!.uri, '-c', 'write -P 0x71 0 64k', '-c', 'write -f -P 0x72 1M 64k', '-c', 'write -z 2M 64k');
    await k.stop('SIGKILL');
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    const data = await group.read(0, 0, 64 * KiB);
    const fua = await group.read(0, 1 * MiB, 64 * KiB);
    await group.close();
    expect(data.every((x) => x === 0x71)).toBe(true);
    expect(fua.every((x) => x === 0x72)).toBe(true);
    const { headers } = await journalReproducesVolumes(g);
    expect(headers).toEqual([
      { type: RecordType.Update, volume: 0, offset: 0, length: 64 * KiB },
      { type: RecordType.Update, volume: 0, offset: 1 * MiB, length: 64 * KiB },
      { type: RecordType.Zero, volume: 0, offset: 2 * MiB, length: 64 * KiB },
    ]);
  });

  it('structured replies: data chunks, error chunks with a message, block status with REQ_ONE', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const s = await serve(g);
    const c = new Raw(join(g, 'nbd.sock'));
    await c.read(18);
    c.send(u32(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES), encodeOptionHeader(Opt.STRUCTURED_REPLY, 0));
    expect((await c.optionReply()).type).toBe(Rep.ACK);
    const q = Buffer.from('base:allocation');
    const meta = Buffer.concat([u32(1), Buffer.from('a'), u32(1), u32(q.length), q]);
    c.send(encodeOptionHeader(Opt.SET_META_CONTEXT, meta.length), meta);
    const ctx = await c.optionReply();
    expect(ctx.type).toBe(Rep.META_CONTEXT);
    expect(ctx.data.subarray(4).toString()).toBe('base:allocation');
    expect((await c.optionReply()).type).toBe(Rep.ACK);
    const go = Buffer.concat([u32(1), Buffer.from('a'), Buffer.from([0, 0])]);
    c.send(encodeOptionHeader(Opt.GO, go.length), go);
    for (let r = await c.optionReply(); r.type !== Rep.ACK; r = await c.optionReply()) expect(r.type).toBe(Rep.INFO);

    const chunk = async (): Promise<{ flags: number; type: number; handle: bigint; payload: Buffer }> => {
      const h = await c.read(20);
      expect(h.readUInt32BE(0)).toBe(0x668e33ef);
      return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), handle: h.readBigUInt64BE(8), payload: await c.read(h.readUInt32BE(16)) };
    };
    c.send(req(Cmd.WRITE, 1n, 4096, 4096), Buffer.alloc(4096, 0x5a));
    expect(await c.simpleReply()).toEqual({ error: 0, handle: 1n }); // a success without data may be a simple reply
    c.send(req(Cmd.READ, 2n, 4096, 4096, 0x4 /* DF */));
    const data = await chunk();
    expect(data).toMatchObject({ flags: 1, type: 1, handle: 2n });
    expect(data.payload.readBigUInt64BE(0)).toBe(4096n);
    expect(data.payload.subarray(8).every((x) => x === 0x5a)).toBe(true);
    c.send(req(Cmd.READ, 3n, 1 * MiB - 10, 4096));
    const err = await chunk();
    expect(err).toMatchObject({ flags: 1, type: 0x8001, handle: 3n });
    expect(err.payload.readUInt32BE(0)).toBe(Errno.EINVAL);
    expect(err.payload.subarray(6).toString()).toMatch(/past the end of "a"/);
    c.send(req(Cmd.BLOCK_STATUS, 4n, 0, 1 * MiB, 0x8 /* REQ_ONE */));
    const bs = await chunk();
    expect(bs).toMatchObject({ flags: 1, type: 5, handle: 4n });
    expect(bs.payload.length).toBe(12); // context id + one descriptor
    expect([bs.payload.readUInt32BE(4), bs.payload.readUInt32BE(8)]).toEqual([65536, 0]); // the first 64 KiB granule holds data
    c.send(req(Cmd.DISC, 5n, 0, 0));
    expect(await c.closedByServer()).toBe(true);
    expect((await s.stop())).toExit(0);
  });
});
