import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cmd } from '../../src/nbd/protocol.js';
import { KiB, MiB, makeGroup, tempDir } from '../helpers.js';
import { Raw, req, serveUnder } from './helpers.js';

/**
 * DESIGN invariant 2, for power cuts: the server's system calls are traced
 * (strace -f) and every FUA or FLUSH reply must follow an fdatasync of the
 * journal and of the PVOL that completed after the request arrived (and,
 * for FLUSH, after the PVOL write of the write it covers).
 */
const hex = (b: Buffer): string => [...b].map((x) => `\\x${x.toString(16).padStart(2, '0')}`).join('');
const handleHex = (h: bigint): string => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(h);
  return hex(b);
};

interface Line { i: number; pid: string; text: string }

/** Index of the line where the syscall that starts at line `l` completed. */
function completion(lines: Line[], l: Line): number {
  if (!l.text.includes('<unfinished ...>')) return l.i;
  const name = /^(\w+)\(/.exec(l.text)?.[1] ?? '';
  const r = lines.find((x) => x.i > l.i && x.pid === l.pid && x.text.startsWith(`<... ${name} resumed>`));
  return r ? r.i : Infinity;
}

describe('power cut: FUA and FLUSH replies follow fdatasync of journal and PVOL (strace)', () => {
  const dir = tempDir();

  it('holds for a FUA write and for a FLUSH after a plain write', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const trace = join(dir, 'trace.txt');
    const s = await serveUnder(['strace', '-f', '-y', '-xx', '-s', '96', '-e', 'trace=read,readv,recvfrom,write,writev,pwrite64,pwritev,fdatasync,fsync', '-o', trace], g);
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
    expect((await s.stop()).code).toBe(0);

    const lines: Line[] = readFileSync(trace, 'utf8').split('\n').map((t, i) => {
      const m = /^(\d+)\s+(.*)$/.exec(t);
      return { i, pid: m?.[1] ?? '', text: m?.[2] ?? t };
    });
    const journal = join(g, 'journal.jv');
    const pvol = join(dir, 'a.img');
    // strace -xx prints paths in hex too.
    const fdOf = (path: string): string => `<${hex(Buffer.from(path))}>`;
    const syncs = (path: string): number[] => lines.filter((l) => /^(fdatasync|fsync)\(/.test(l.text) && l.text.includes(fdOf(path))).map((l) => completion(lines, l));
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
      expect(pvolSyncs.some((x) => x > asked && x < replied), `PVOL fdatasync between request and reply ${h.toString(16)}`).toBe(true);
    }
    // The FLUSH covers H2: its PVOL write completed before the fdatasync that preceded the FLUSH reply.
    const h2Data = hex(Buffer.alloc(16, 0x22));
    const h2Pvol = lines.filter((l) => /^pwrite/.test(l.text) && l.text.includes(fdOf(pvol)) && l.text.includes(h2Data)).map((l) => completion(lines, l));
    expect(h2Pvol.length).toBeGreaterThan(0);
    const flushReply = replyAt(H3);
    expect(pvolSyncs.some((x) => x > Math.min(...h2Pvol) && x < flushReply)).toBe(true);
  });
});
