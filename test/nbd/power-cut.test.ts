import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cmd } from '../../src/nbd/protocol.js';
import { KiB, MiB, makeGroup, tempDir } from '../helpers.js';
import { Raw, req, serveUnder } from './helpers.js';

/**
 * DESIGN invariant 2, for power cuts: the server's system calls are traced
 * (strace -f). The journal is the durability point: every FUA or FLUSH reply
 * must follow an fdatasync of the journal that completed after the request
 * arrived (and, for FLUSH, after the journal write of the write it covers).
 * The PVOL follows at checkpoints: every superblock write that advances the
 * applied pointer must follow an fdatasync of the PVOL that completed after
 * every PVOL write before it.
 */
const hex = (b: Buffer): string => [...b].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('');
const handleHex = (h: bigint): string => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(h);
  return hex(b);
};
const unhex = (text: string): Buffer => Buffer.from(text.replace(/\\x/g, ''), 'hex');

interface Line { i: number; pid: string; text: string }

/** Index of the line where the syscall that starts at line `l` completed. */
function completion(lines: Line[], l: Line): number {
  if (!l.text.includes('<unfinished ...>')) return l.i;
  const name = /^(\w+)\(/.exec(l.text)?.[1] ?? '';
  const r = lines.find((x) => x.i > l.i && x.pid === l.pid && x.text.startsWith(`<... ${name} resumed>`));
  return r ? r.i : Infinity;
}

describe('power cut: FUA and FLUSH replies follow the journal\'s fdatasync; the applied pointer follows the PVOL\'s (strace)', () => {
  const dir = tempDir();

  it('holds for a FUA write, for a FLUSH after a plain write, and for the checkpoint at stop', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const trace = join(dir, 'trace.txt');
    // No timed checkpoint: the one at stop is the only one, so the FLUSH below is answered without any PVOL sync.
    const s = await serveUnder(['strace', '-f', '-y', '-xx', '-s', '160', '-e', 'trace=read,readv,recvfrom,write,writev,pwrite64,pwritev,fdatasync,fsync', '-o', trace], g, '--checkpoint-interval', '0');
    const c = new Raw(join(g, 'nbd.sock'));
    await c.handshake();
    const H1 = 0xa1a1a1a1a1a1a1a1n; // WRITE + FUA
    const H2 = 0xa2a2a2a2a2a2a2a2n; // plain WRITE
    const H3 = 0xa3a3a3a3a3a3a3a3n; // FLUSH
    c.send(req(Cmd.WRITE, H1, 0, 4 * KiB, 1), Buffer.alloc(4 * KiB, 0x11));
    expect(await c.simpleReply()).toEqual({ error: 0, handle: H1 });
    c.send(req(Cmd.WRITE, H2, 8 * KiB, 4 * KiB), Buffer.alloc(4 * KiB, 0x22));
    expect(await c.simpleReply()).toEqual({ error: 0, handle: H2 });
    c.send(req(Cmd.FLUSH, H3, 0, 0));
    expect(await c.simpleReply()).toEqual({ error: 0, handle: H3 });
    expect((await s.stop())).toExit(0);

    const lines: Line[] = readFileSync(trace, 'utf8').split('\n').map((t, i) => {
      const m = /^(\d+)\s+(.*)$/.exec(t);
      return { i, pid: m?.[1] ?? '', text: m?.[2] ?? t };
    });
    const journal = join(g, 'journal.jv');
    const pvol = join(dir, 'a.img');
    // strace -xx prints paths in hex too.
    const fdOf = (path: string): string => `<${hex(Buffer.from(path))}>`;
    const syncs = (path: string): number[] => lines.filter((l) => /^(fdatasync|fsync)\(/.test(l.text) && l.text.includes(fdOf(path))).map((l) => completion(lines, l));
    const writesTo = (path: string): Line[] => lines.filter((l) => /^pwrite/.test(l.text) && l.text.includes(fdOf(path)));
    const journalSyncs = syncs(journal);
    const pvolSyncs = syncs(pvol);
    expect(journalSyncs.length).toBeGreaterThan(0);
    expect(pvolSyncs.length).toBeGreaterThan(0);
    // A read's data is printed where it returns: on its line, or on its "resumed" line when another thread interleaved.
    const requestAt = (h: bigint): number => lines.find((l) => /^(read|readv|recvfrom)\(|^<\.\.\. (read|readv|recvfrom) resumed>/.test(l.text) && l.text.includes(`\\x25\\x60\\x95\\x13`) && l.text.includes(handleHex(h)))?.i ?? -1;
    const replyAt = (h: bigint): number => lines.find((l) => /^(write|writev)\(/.test(l.text) && l.text.includes(`\\x67\\x44\\x66\\x98\\x00\\x00\\x00\\x00${handleHex(h)}`))?.i ?? -1;
    for (const h of [H1, H3]) {
      const asked = requestAt(h);
      const replied = replyAt(h);
      expect(asked, `request ${h.toString(16)} in the trace`).toBeGreaterThanOrEqual(0);
      expect(replied, `reply ${h.toString(16)} in the trace`).toBeGreaterThan(asked);
      expect(journalSyncs.some((x) => x > asked && x < replied), `journal fdatasync between request and reply ${h.toString(16)}`).toBe(true);
    }
    // The FLUSH covers H2: its journal write completed before the fdatasync that preceded the FLUSH reply.
    const h2Data = hex(Buffer.alloc(16, 0x22));
    const flushReply = replyAt(H3);
    const h2Journal = writesTo(journal).filter((l) => l.text.includes(h2Data)).map((l) => completion(lines, l));
    expect(h2Journal.length).toBeGreaterThan(0);
    expect(journalSyncs.some((x) => x > Math.min(...h2Journal) && x < flushReply)).toBe(true);
    // The PVOL is not on the FLUSH's path: no PVOL fdatasync between the FLUSH request and its reply.
    expect(pvolSyncs.filter((x) => x > requestAt(H3) && x < flushReply)).toEqual([]);

    // Superblock writes: each copy at offset 0 or 4096 of the journal; the applied pointer is the u64 LE at byte 112.
    const superblocks = writesTo(journal).map((l) => ({ l, m: /^pwrite64\([^,]+, "((?:\\x[0-9a-f]{2})+)"(?:\.\.\.)?, \d+, (\d+)\)/.exec(l.text) }))
      .filter((x) => x.m && (x.m[2] === '0' || x.m[2] === '4096'))
      .map(({ l, m }) => ({ at: l.i, applied: unhex(m?.[1] ?? '').readBigUInt64LE(112) }));
    expect(superblocks.length).toBeGreaterThan(0);
    let applied = superblocks[0]!.applied;
    let advances = 0;
    for (const sb of superblocks) {
      if (sb.applied > applied) {
        advances++;
        // Every PVOL write before it is followed by a PVOL fdatasync that completed before it.
        const before = writesTo(pvol).filter((l) => l.i < sb.at).map((l) => completion(lines, l));
        expect(before.length, 'PVOL writes before the applied pointer moved').toBeGreaterThan(0);
        expect(pvolSyncs.some((x) => x > Math.max(...before) && x < sb.at), `PVOL fdatasync before the applied pointer moved to ${sb.applied}`).toBe(true);
      }
      applied = sb.applied;
    }
    // The checkpoint at stop moved it past both writes.
    expect(advances).toBeGreaterThan(0);
    expect(applied).toBeGreaterThanOrEqual(2n);
  });
});
