import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { BIN, KiB, MiB, jshipJson, makeGroup, mountTmpfs, tempDir, unmount } from '../helpers.js';
import { serve } from '../nbd/helpers.js';

/** `cat FIFO > OUT` (the reader a drive would be); resolves when the writer closed the FIFO. */
function readFifo(fifo: string, out: string): Promise<number | null> {
  const p = spawn('sh', ['-c', `cat '${fifo}' > '${out}'`], { stdio: 'ignore' });
  return new Promise((r) => p.once('close', r));
}

/** `cat IN > FIFO` (a drive played back). */
function feedFifo(fifo: string, input: string): Promise<number | null> {
  const p = spawn('sh', ['-c', `cat '${input}' > '${fifo}'`], { stdio: 'ignore' });
  return new Promise((r) => p.once('close', r));
}

const jship = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

describe('tape drives and FIFOs: whole blocks out, the same checks in', () => {
  const dir = tempDir();

  it('every write to a FIFO is exactly one block; zstd -t and tar -b N read the stream; import from a FIFO restores exactly', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 48; i++) await group.write('a', i * 80 * KiB, randomBytes(20_000 + i * 7));
    await group.close();
    const fifo = join(dir, 'drive');
    expect(spawnSync('mkfifo', [fifo])).toExit(0);
    for (const [bs, tarBlocks] of [['64K', 128], ['10K', 20]] as const) {
      const captured = join(dir, `captured-${bs}`);
      const reader = readFifo(fifo, captured);
      const trace = join(dir, `strace-${bs}`);
      const r = spawnSync('strace', ['-ff', '-qq', '-y', '-e', 'trace=write,writev,pwrite64', '-o', trace, process.execPath, BIN, 'export', g, '--to', fifo, '--block-size', bs, ...(bs === '64K' ? ['--base'] : ['--allow-empty']), '--json'], { encoding: 'utf8' });
      expect(r).toExit(0);
      expect(await reader).toBe(0);
      const size = bs === '64K' ? 64 * KiB : 10 * KiB;
      // Every write to the FIFO, as the kernel saw it: one block each (a file per thread: no call is split
      // into "unfinished" and "resumed" lines, as with -f when threads interleave).
      const writes = readdirSync(dir).filter((f) => f.startsWith(`strace-${bs}.`)).flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n')).filter((l) => l.includes(`<${fifo}>`)).map((l) => Number(/= (-?\d+)/.exec(l)?.[1]));
      expect(writes.length).toBeGreaterThanOrEqual(1);
      expect(writes.every((n) => n === size), `write sizes: ${[...new Set(writes)].join(', ')}`).toBe(true);
      expect(statSync(captured).size % size).toBe(0);
      expect(spawnSync('zstd', ['-tq', captured])).toExit(0);
      const tar = spawnSync('tar', ['-b', String(tarBlocks), '--zstd', '-tf', captured], { encoding: 'utf8' });
      expect(tar).toExit(0);
      expect(tar.stdout.split('\n')[0]).toBe('jship-label.json');
      expect(jship('verify', captured)).toExit(0);
    }
    // Played back through the FIFO (as a drive is read), in blocks.
    const rep = join(dir, 'rep');
    for (const bs of ['64K', '10K']) {
      const feeder = feedFifo(fifo, join(dir, `captured-${bs}`));
      const imp = jshipJson('import', rep, fifo, '--block-size', bs);
      expect(imp).toExit(0);
      expect(await feeder).toBe(0);
    }
    expect(jshipJson('restore', rep, '--target', join(dir, 'out.img'))).toExit(0);
    expect(readFileSync(join(dir, 'out.img')).equals(readFileSync(join(dir, 'a.img')))).toBe(true);
    // jship tapes reads a drive through, as tar -t does: label and trailer.
    const feeder = feedFifo(fifo, join(dir, 'captured-10K'));
    const listed = jshipJson('tapes', fifo, '--block-size', '10K');
    expect(await feeder).toBe(0);
    expect(listed).toExit(0);
    expect(listed.out.tapes[0]).toMatchObject({ serial: 2, problem: null, trailer: { serial: 2 } });
    // Bad block sizes and block sizes where there are no blocks: usage errors.
    expect(jshipJson('export', g, '--to', fifo, '--block-size', '1000')).toExit(2);
    expect(jshipJson('export', g, '--to', `${join(dir, 'tapes')}/`, '--block-size', '64K')).toExit(2);
    expect(jshipJson('import', rep, fifo, '--block-size', '17M')).toExit(2);
  }, 120_000);

  it('end of medium (ENOSPC from the drive after some blocks): a clear error, the tape not counted, nothing purged; the same export then goes elsewhere whole', async () => {
    const g = await makeGroup(join(dir, 'eom'), { a: 4 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 48; i++) await group.write('a', i * 80 * KiB, randomBytes(40_000));
    await group.close();
    const fifo = join(dir, 'eom-drive');
    expect(spawnSync('mkfifo', [fifo])).toExit(0);
    const chain = (): string | null => (existsSync(join(g, 'chain.json')) ? readFileSync(join(g, 'chain.json'), 'utf8') : null);
    const chainBefore = chain();
    const journalBefore = jshipJson('status', g).out.journal;
    const reader = readFifo(fifo, join(dir, 'eom-captured'));
    // The drive takes some blocks, then reports the end of the medium (strace counts the writes per thread: how many is not fixed).
    const r = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-P', fifo, '-e', 'trace=write', '-e', 'inject=write:error=ENOSPC:when=9+', process.execPath, BIN, 'export', g, '--to', fifo, '--base', '--block-size', '64K', '--json'], { encoding: 'utf8' });
    await reader;
    expect(r).toExit(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.code).toBe('MEDIA_END');
    expect(err.message).toMatch(new RegExp(`${fifo}: the medium took no more \\(ENOSPC\\) after \\d+ blocks of 65536 bytes of tape 1: that tape is not complete and is not counted; nothing was purged`));
    expect(err.hint).toMatch(/load the next medium/);
    // What it says it wrote is what the drive got.
    expect(err.details.blocks * 64 * KiB).toBe(statSync(join(dir, 'eom-captured')).size);
    expect(err.details.blocks).toBeGreaterThanOrEqual(8);
    expect(chain()).toBe(chainBefore);
    expect(jshipJson('status', g).out.journal.out).toEqual(journalBefore.out);
    // The same export to a directory: tape 1, every record.
    const again = jshipJson('export', g, '--to', `${join(dir, 'eom-tapes')}/`, '--base');
    expect(again).toExit(0);
    expect(again.out.tapes[0].serial).toBe(1);
    const rep = join(dir, 'eom-rep');
    expect(jshipJson('import', rep, join(dir, 'eom-tapes'))).toExit(0);
    expect(jshipJson('restore', rep, '--target', join(dir, 'eom.img'))).toExit(0);
    expect(readFileSync(join(dir, 'eom.img')).equals(readFileSync(join(dir, 'eom', 'a.img')))).toBe(true);
  }, 120_000);

  it('standard output in blocks: --to - --block-size pads the tape to whole blocks', async () => {
    const g = await makeGroup(join(dir, 'so'), { a: 1 * MiB }, { journalSize: 16 * MiB });
    const out = join(dir, 'so.tape');
    const r = spawnSync('sh', ['-c', `'${process.execPath}' '${BIN}' export '${g}' --to - --base --block-size 32K > '${out}'`], { encoding: 'utf8' });
    expect(r).toExit(0);
    expect(statSync(out).size % (32 * KiB)).toBe(0);
    expect(jship('verify', out)).toExit(0);
  });

  it('the same tape is the same tape: a copy padded with zeros (or a drive\'s last block) imports as the tape, and the original after it is a duplicate; verify chains padded copies', async () => {
    const g = await makeGroup(join(dir, 'pad'), { a: 1 * MiB }, { journalSize: 16 * MiB });
    const tapes = join(dir, 'pad-tapes');
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--base')).toExit(0);
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 8; i++) await group.write('a', i * 64 * KiB, randomBytes(10_000));
    await group.close();
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);
    const [t1, t2] = readdirSync(tapes).sort().map((n) => join(tapes, n)) as [string, string];
    const padded = join(dir, 'padded-1.tar.zst');
    writeFileSync(padded, Buffer.concat([readFileSync(t1), Buffer.alloc(3 * 10240 + 17)]));
    expect(jshipJson('verify', padded, t2)).toExit(0);
    const rep = join(dir, 'pad-rep');
    const first = jshipJson('import', rep, padded);
    expect(first.out.tapes[0].outcome).toBe('imported');
    const again = jshipJson('import', rep, t1, t2);
    expect(again).toExit(0);
    expect(again.out.tapes.map((t: { outcome: string }) => t.outcome)).toEqual(['duplicate', 'imported']);
    // The stored copy is the tape as written, byte for byte.
    const stored = readdirSync(join(rep, 'tapes')).filter((n) => n.startsWith('jship-000001')).map((n) => join(rep, 'tapes', n));
    expect(readFileSync(stored[0]!).equals(readFileSync(t1))).toBe(true);
  });

  it('a disk that fills during a media set: MEDIA_END names the directory and the tapes completed and counted; the same export on another medium goes on after them', async () => {
    const g = await makeGroup(join(dir, 'full'), { a: 8 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 48; i++) await group.write('a', i * 160 * KiB, randomBytes(100_000));
    await group.close();
    const disk = join(dir, 'disk');
    mountTmpfs(disk, '2m');
    let r;
    try {
      r = jshipJson('export', g, '--to', `${disk}/`, '--media-size', '768K');
      expect(r).toExit(1);
      expect(readdirSync(disk).filter((n) => n.startsWith('.'))).toEqual([]);
    } finally {
      unmount(disk);
    }
    expect(r.out.error.code).toBe('MEDIA_END');
    expect(r.out.error.message).toMatch(new RegExp(`^${disk}: no space left \\(ENOSPC\\); 2 tapes of this export \\(serials 1\\.\\.2\\) were completed and are counted in the chain; the tape being written was removed, and nothing it held was purged$`));
    expect(JSON.parse(readFileSync(join(g, 'chain.json'), 'utf8')).nextSerial).toBe(3);
    const next = jshipJson('export', g, '--to', `${join(dir, 'disk2')}/`, '--media-size', '768K');
    expect(next).toExit(0);
    expect(next.out.tapes[0].serial).toBe(3);
  });
});


describe('tape names say what a reader expects', () => {
  const dir = tempDir();

  it('the range in a name is the updates\' sequence numbers (never base positions); a base-only tape is named by its base; an empty one says so — in the export and in the replica', async () => {
    const g = await makeGroup(dir, { a: 2 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 32; i++) await group.write('a', i * 64 * KiB, randomBytes(64 * KiB));
    await group.close();
    const tapes = join(dir, 'tapes');
    const r = jshipJson('export', g, '--to', `${tapes}/`, '--base', '--media-size', '512K');
    expect(r).toExit(0);
    const e = jshipJson('export', g, '--to', `${tapes}/`, '--allow-empty');
    expect(e).toExit(0);
    const names = [...r.out.tapes, ...e.out.tapes].map((t: { name: string; updates: { firstSeq: number; lastSeq: number } | null; base: unknown }) => {
      const pad = (x: number): string => String(x).padStart(16, '0');
      const want = t.updates ? `-${pad(t.updates.firstSeq)}-${pad(t.updates.lastSeq)}.tar.zst` : t.base ? /-base-\d{16}\.tar\.zst$/ : '-empty.tar.zst';
      if (typeof want === 'string') expect(t.name.endsWith(want), t.name).toBe(true);
      else expect(t.name).toMatch(want);
      return t.name;
    });
    expect(names.some((n) => n.includes('-base-'))).toBe(true);
    expect(names.at(-1)).toMatch(/-empty\.tar\.zst$/);
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    expect(readdirSync(join(rep, 'tapes')).sort()).toEqual([...names].sort());
  });
});

describe('a carried disk', () => {
  const dir = tempDir();

  it('--require-mount: an empty mount point (the disk not attached) is refused with nothing written or purged; once mounted, the tapes go onto it', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const mnt = join(dir, 'mnt');
    spawnSync('mkdir', ['-p', mnt]);
    const refused = jshipJson('export', g, '--to', `${mnt}/jship/`, '--require-mount', mnt, '--base');
    expect(refused).toExit(1);
    expect(refused.out.error.code).toBe('MEDIA_NOT_MOUNTED');
    expect(refused.out.error.message).toBe(`${mnt} is not a mount point (is the disk attached and mounted?): nothing was written, nothing purged`);
    expect(readdirSync(mnt)).toEqual([]);
    expect(existsSync(join(g, 'chain.json'))).toBe(false);
    expect(jshipJson('export', g, '--to', `${join(dir, 'elsewhere')}/`, '--require-mount', mnt)).toExit(2);
    // The same through the group's running server (the check is made where the tapes are written).
    const srv = await serve(g, '--socket', join(dir, 'nbd.sock'));
    try {
      const viaServer = jshipJson('export', g, '--to', `${mnt}/jship/`, '--require-mount', mnt, '--base');
      expect(viaServer.out.error.code).toBe('MEDIA_NOT_MOUNTED');
      expect(readdirSync(mnt)).toEqual([]);
    } finally {
      expect((await srv.stop())).toExit(0);
    }
    mountTmpfs(mnt, '16m');
    try {
      const ok = jshipJson('export', g, '--to', `${mnt}/jship/`, '--require-mount', mnt, '--base');
      expect(ok).toExit(0);
      expect(readdirSync(join(mnt, 'jship')).sort()).toEqual([expect.stringMatching(/^jship-000001-.*\.tar\.zst$/), 'jship-manifest.json']);
    } finally {
      unmount(mnt);
    }
  });
});
