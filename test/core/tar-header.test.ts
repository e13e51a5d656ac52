import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { TAR_BLOCK, decodeTarHeader, encodeTarHeader, splitTar, tarEntryBytes, tarPadding } from '../../src/core/tar-header.js';
import { tarPieces } from '../../src/tape/tar-entry.js';
import { tempDir } from '../helpers.js';

/** What tar-stream (which wrote every tape before the codec) packs for the same entries. */
function tarStreamPack(entries: Array<{ name: string; content: Buffer }>, mtime: Date): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = tar.pack();
    const chunks: Buffer[] = [];
    p.on('data', (x: unknown) => chunks.push(x as Buffer));
    p.on('end', () => resolve(Buffer.concat(chunks)));
    p.on('error', reject);
    for (const e of entries) p.entry({ name: e.name, size: e.content.length, mode: 0o644, mtime, uname: 'jship', gname: 'jship' }, e.content);
    p.finalize();
  });
}

describe('tar header codec', () => {
  it('golden bytes: a segment entry header, field by field', () => {
    const h = encodeTarHeader({ name: 'segments/00000001.jrs', size: 1_048_672, mtime: 1_796_000_000 });
    expect(h.length).toBe(TAR_BLOCK);
    const field = (off: number, len: number): string => h.subarray(off, off + len).toString('latin1');
    expect(field(0, 100)).toBe('segments/00000001.jrs'.padEnd(100, '\0'));
    expect(field(100, 8)).toBe('000644 \0');
    expect(field(108, 8)).toBe('000000 \0');
    expect(field(116, 8)).toBe('000000 \0');
    expect(field(124, 12)).toBe(`${(1_048_672).toString(8).padStart(11, '0')} `);
    expect(field(136, 12)).toBe(`${(1_796_000_000).toString(8).padStart(11, '0')} `);
    expect(field(156, 1)).toBe('0');
    expect(field(257, 8)).toBe('ustar\u000000');
    expect(field(265, 32)).toBe('jship'.padEnd(32, '\0'));
    expect(field(297, 32)).toBe('jship'.padEnd(32, '\0'));
    let sum = 0;
    for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    expect(field(148, 8)).toBe(`${sum.toString(8).padStart(6, '0')} \0`);
    expect(decodeTarHeader(h)).toEqual({ name: 'segments/00000001.jrs', size: 1_048_672, mtime: 1_796_000_000, mode: 0o644, uname: 'jship', gname: 'jship' });
    // Past 2038 (where tar-stream's 32-bit truncation went wrong): the octal field holds 33 bits.
    const late = encodeTarHeader({ name: 'jship-label.json', size: 0, mtime: 2 ** 31 + 5 });
    expect(late.subarray(136, 148).toString('latin1')).toBe('20000000005 ');
    expect((decodeTarHeader(late) as { mtime: number }).mtime).toBe(2 ** 31 + 5);
  });

  it('packs byte for byte what tar-stream packed (property: names, sizes, mtimes), and splits it back', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ name: fc.stringMatching(/^[a-z0-9/._-]{1,100}$/), content: fc.uint8Array({ maxLength: 3000 }) }), { minLength: 1, maxLength: 4 }),
      // tar-stream truncated mtimes to 32-bit signed (`| 0`): it wrote nonsense past 2038-01-19, the codec does not (below).
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.boolean(),
      async (entries, secs, eof) => {
        const mtime = new Date(secs * 1000);
        const list = entries.map((e) => ({ name: e.name, content: Buffer.from(e.content) }));
        const ours = Buffer.concat(tarPieces(list.map((e) => ({ name: e.name, content: [e.content] })), { mtime, eof }));
        const theirs = await tarStreamPack(list, mtime);
        expect(ours.equals(eof ? theirs : theirs.subarray(0, theirs.length - 1024))).toBe(true);
        expect(ours.length).toBe(list.reduce((n, e) => n + tarEntryBytes(e.content.length), 0) + (eof ? 1024 : 0));
        const back = splitTar(ours);
        expect(Array.isArray(back)).toBe(true);
        expect((back as Array<{ name: string; content: Buffer }>).map((e) => ({ name: e.name, content: Buffer.from(e.content) }))).toEqual(list);
      },
    ), { numRuns: 60 });
  });

  it('GNU tar reads what it packs (names, sizes, contents)', () => {
    const dir = tempDir();
    const a = Buffer.from('hello tape\n');
    const b = Buffer.alloc(1537, 7);
    const archive = Buffer.concat(tarPieces([{ name: 'jship-label.json', content: [a] }, { name: 'segments/00000001.jrs', content: [b.subarray(0, 1000), b.subarray(1000)] }], { mtime: new Date(1_796_000_000_000), eof: true }));
    writeFileSync(join(dir, 'a.tar'), archive);
    const list = spawnSync('tar', ['-tvf', join(dir, 'a.tar')], { encoding: 'utf8' });
    expect(list).toExit(0);
    expect(list.stdout).toMatch(/-rw-r--r-- jship\/jship\s+11 .* jship-label.json/);
    expect(list.stdout).toMatch(/1537 .* segments\/00000001.jrs/);
    mkdirSync(join(dir, 'x'));
    expect(spawnSync('tar', ['-xf', join(dir, 'a.tar'), '-C', join(dir, 'x')])).toExit(0);
    expect(readFileSync(join(dir, 'x', 'segments', '00000001.jrs')).equals(b)).toBe(true);
  });

  it('refuses what jship never writes, naming where: checksum, magic, type, size, an entry cut short, bytes past the last block', () => {
    const good = Buffer.concat(tarPieces([{ name: 'x.jrs', content: [Buffer.alloc(700, 1)] }], { mtime: new Date(0), eof: false }));
    expect(tarPadding(700)).toBe(324);
    const flip = (off: number, v: number): Buffer => {
      const b = Buffer.from(good);
      b[off] = v;
      return b;
    };
    expect(splitTar(flip(0, 0x79))).toEqual({ error: 'at byte 0: header checksum does not match' });
    // A damaged field with its checksum made right: each is still refused for what it is.
    const reSum = (b: Buffer): Buffer => {
      b.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < TAR_BLOCK; i++) sum += b[i]!;
      b.write(`${sum.toString(8).padStart(6, '0')} \0`, 148, 'latin1');
      return b;
    };
    expect(splitTar(reSum(flip(257, 0x55)))).toEqual({ error: 'at byte 0: not a ustar header' });
    expect(splitTar(reSum(flip(156, 0x35)))).toEqual({ error: 'at byte 0: entry type "5" (jship writes regular files only)' });
    expect(splitTar(reSum(flip(124, 0x39)))).toEqual({ error: 'at byte 0: size field is not octal' });
    expect(splitTar(good.subarray(0, 1000))).toEqual({ error: 'entry x.jrs at byte 0 declares 700 bytes, 488 follow' });
    expect(splitTar(Buffer.concat([good, Buffer.from([0, 0, 1])]))).toEqual({ error: '3 bytes after the last block' });
    // Zero blocks (the end-of-archive, a drive's padding) are skipped.
    expect(splitTar(Buffer.concat([Buffer.alloc(1024), good, Buffer.alloc(1024)]))).toEqual([{ name: 'x.jrs', content: Buffer.alloc(700, 1) }]);
    expect(() => encodeTarHeader({ name: 'é', size: 1, mtime: 0 })).toThrow(/printable ASCII/);
    expect(() => encodeTarHeader({ name: 'a'.repeat(101), size: 1, mtime: 0 })).toThrow(/1 to 100/);
    expect(() => encodeTarHeader({ name: 'a', size: 8 ** 11, mtime: 0 })).toThrow(/tar entry size/);
  });
});
