import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { KiB, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { client, serve } from './helpers.js';
import { until } from '../link/helpers.js';

/** The group's journal-full policy holds for NBD clients too. */
describe('journal full while serving', () => {
  const dir = tempDir();

  it('suspend: writes go on into the dirty bitmap; an export while serving carries the resync base; the restore is exact', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 2 * MiB, journalFull: 'suspend', chunkSize: 64 * KiB });
    const s = await serve(g);
    const uri = s.ready.exports[0]!.uri;
    const tapes = join(dir, 'tapes') + '/';
    expect(jshipJson('export', g, '--to', tapes, '--base')).toExit(0);
    const src = join(dir, 'src.img');
    writeFileSync(src, randomBytes(6 * MiB));
    // 6 MiB through a 2 MiB journal: it fills, the group suspends, the client never notices.
    client('nbdcopy', src, uri);
    const st = jshipJson('status', g);
    expect(['suspended', 'resync-pending']).toContain(st.out.state);
    expect(st.out.dirty.chunks).toBeGreaterThan(0);
    // An export purges; the next write finds room and resumes journaling; the next export carries
    // the resync base of the dirty chunks, and the group is active again.
    expect(jshipJson('export', g, '--to', tapes)).toExit(0);
    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x77 7M 4k');
    expect(jshipJson('status', g).out.state).toBe('resync-pending');
    const resync = jshipJson('export', g, '--to', tapes);
    expect(resync).toExit(0);
    expect(resync.out.base.scope).toBe('resync');
    expect(jshipJson('status', g).out.state).toBe('active');
    // One event per change of state, in order.
    await until('the server\'s events to arrive', () => s.log().includes('journal-resync-complete'));
    const names = s.log().split('\n').map((l) => l.split(' ')[1]).filter((n) => /^journal-/.test(n ?? ''));
    const at = (n: string): number => names.indexOf(n);
    for (const n of ['journal-suspended', 'journal-resumed', 'journal-resync-complete']) expect(names, s.log()).toContain(n);
    expect(at('journal-suspended')).toBeLessThan(at('journal-resumed'));
    expect(at('journal-resumed')).toBeLessThan(at('journal-resync-complete'));
    expect(s.log()).toMatch(/ journal-suspended from=\S+ state=suspended usage="[^"]+" why="journal full/);
    expect((await s.stop())).toExit(0);
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    const out = join(dir, 'out.img');
    const r = jshipJson('restore', rep, '--target', out);
    expect(r).toExit(0);
    expect(readFileSync(out).subarray(0, 6 * MiB).equals(readFileSync(src))).toBe(true);
    expect(readFileSync(out).equals(readFileSync(join(dir, 'a.img')))).toBe(true);
  });

  it('block: a write that finds no space waits, then fails with ENOSPC; what was acknowledged stays', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 2 * MiB, blockTimeoutMs: 500 });
    const s = await serve(g);
    const uri = s.ready.exports[0]!.uri;
    const r = spawnSync('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x11 0 512k', '-c', 'write -P 0x22 512k 512k', '-c', 'write -P 0x33 1M 512k',
      '-c', 'write -P 0x44 2M 512k', '-c', 'write -P 0x55 3M 512k'], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toMatch(/No space left on device/);
    expect(r.stdout).toMatch(/wrote 524288\/524288 bytes at offset 0\n/);
    client('qemu-io', '-f', 'raw', uri, '-c', 'read -P 0x11 0 512k');
    // ENOSPC is the client's answer, not a server failure; the events say what happened, in order.
    await until('the server\'s events to arrive', () => s.log().includes('writer-failed'));
    expect(s.log()).not.toMatch(/request-failed|group-failed/);
    const names = s.log().split('\n').map((l) => l.split(' ')[1]).filter((n) => /^(journal|writer)-/.test(n ?? ''));
    expect(names.slice(0, 2), s.log()).toEqual(['journal-full', 'writer-blocked']);
    expect(names).toContain('writer-failed');
    expect(s.log()).toMatch(/ writer-failed error=JOURNAL_FULL usage="[^"]+" waitedMs=500\n/);
    expect((await s.stop())).toExit(0);
    // The journal holds what was acknowledged (the first writes), nothing of what was refused.
    const st = jshipJson('status', g).out;
    expect(Number(st.journal.bytes)).toBeGreaterThanOrEqual(512 * KiB);
    expect(Number(st.journal.bytes) % (512 * KiB)).toBe(0);
  });
});
