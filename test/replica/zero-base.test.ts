import { copyFileSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { BIN, KiB, MiB, jshipJson, jshipProc, tempDir } from '../helpers.js';
import { spawnSync } from 'node:child_process';
import { client } from '../nbd/helpers.js';
import { relabel } from './forge.js';

/**
 * Issue 19 item 3: volumes `jship init` created zero-filled are a known state
 * before the first record — a base at seq 0 needing no bytes — so every point
 * from the first write on restores without a base having been exported.
 */
describe('volumes created by init: the base at seq 0', () => {
  const dir = tempDir();

  it('every marker, from one before the first write, restores and mounts exactly without --base; SVOLs go back to zeros; a rebuild keeps it', async () => {
    const g = join(dir, 'g');
    const init = jshipJson('init', g, '--volume', `a=${join(dir, 'a.img')}:4M`, '--volume', `b=${join(dir, 'b.img')}:1M`, '--journal-size', '16M');
    expect(init).toExit(0);
    expect(JSON.parse(readFileSync(join(g, 'group.json'), 'utf8')).zeroedTs).toMatch(/^\d+$/);
    const images: Record<string, { a: Buffer; b: Buffer }> = { m0: { a: Buffer.alloc(4 * MiB), b: Buffer.alloc(1 * MiB) } };
    const snap = (m: string): void => { images[m] = { a: readFileSync(join(dir, 'a.img')), b: readFileSync(join(dir, 'b.img')) }; };
    expect(jshipJson('mark', g, 'm0')).toExit(0);
    let group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 24; i++) await group.write(i % 3 ? 'a' : 'b', (i * 29 % 15) * 64 * KiB + (i % 2) * 512, randomBytes(48 * KiB));
    await group.flush();
    await group.mark('m1');
    snap('m1');
    await group.close();
    const tapes = join(dir, 'tapes');
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);
    group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 16; i++) await group.write('a', (i * 53 % 60) * 64 * KiB, randomBytes(16 * KiB));
    await group.writeZeroes('a', 1 * MiB, 256 * KiB);
    await group.trim('b', 0, 128 * KiB);
    await group.flush();
    await group.mark('m2');
    snap('m2');
    await group.close();
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);

    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    const tl = jshipJson('timeline', rep).out;
    expect(tl.bases[0]).toMatchObject({ baseId: 0, scope: 'full', completeSeq: 0 });
    expect(spawnSync(process.execPath, [BIN, 'timeline', rep], { encoding: 'utf8' }).stdout).toMatch(/full base 0: the volumes as jship init created them, all zeros \(.*\), before seq 1\n/);
    expect(tl.markers.map((m: { name: string; restorable: boolean }) => [m.name, m.restorable])).toEqual([['m0', true], ['m1', true], ['m2', true]]);
    expect(tl.restorable).toHaveLength(1);
    expect(tl.restorable[0].fromSeq).toBe(1);
    const same = (m: string, a: string, b: string): void => {
      expect(readFileSync(a).equals((images[m] as { a: Buffer }).a), `${m} a`).toBe(true);
      expect(readFileSync(b).equals((images[m] as { b: Buffer }).b), `${m} b`).toBe(true);
    };
    for (const m of ['m0', 'm1', 'm2']) {
      const r = jshipJson('restore', rep, '--marker', m, '--target', join(dir, `${m}/`));
      expect(r).toExit(0);
      expect(r.out.plan.bases).toEqual([{ baseId: 0, scope: 'full', segments: 0 }]);
      same(m, join(dir, m, 'a.img'), join(dir, m, 'b.img'));
    }
    // The SVOLs, restored in place, m0 to m2: files left from before (state.json says never restored)
    // hold other bytes — from the base at seq 0 they start as zeros.
    const svol = (v: string): string => join(rep, 'svol', `${v}.img`);
    mkdirSync(join(rep, 'svol'), { recursive: true });
    writeFileSync(svol('a'), randomBytes(4 * MiB));
    writeFileSync(svol('b'), randomBytes(1 * MiB));
    for (const m of ['m0', 'm1', 'm2']) {
      const back = jshipJson('restore', rep, '--marker', m);
      expect(back.code, `${m}: ${JSON.stringify(back.out)}`).toBe(0);
      same(m, svol('a'), svol('b'));
    }
    // An existing file of other bytes, replaced with --force.
    writeFileSync(join(dir, 'dirty.img'), randomBytes(1 * MiB));
    expect(jshipJson('restore', rep, '--marker', 'm1', '--volume', 'b', '--target', join(dir, 'dirty.img'), '--force')).toExit(0);
    expect(readFileSync(join(dir, 'dirty.img')).equals((images.m1 as { b: Buffer }).b)).toBe(true);
    // A mount of m1 serves the same bytes.
    const srv = await jshipProc('mount', rep, '--marker', 'm1', '--socket', join(dir, 'm.sock'));
    try {
      for (const v of ['a', 'b']) {
        client('nbdcopy', srv.ready.exports.find((x: { name: string }) => x.name === v).uri, join(dir, `mounted-${v}.img`));
      }
    } finally {
      expect(await srv.stop()).toBe(0);
    }
    same('m1', join(dir, 'mounted-a.img'), join(dir, 'mounted-b.img'));
    // A catalogue rebuilt from the tapes still knows the base at seq 0.
    expect(jshipJson('catalog', rep, '--rebuild')).toExit(0);
    expect(jshipJson('restore', rep, '--marker', 'm0', '--target', join(dir, 'rebuilt/'))).toExit(0);
    same('m0', join(dir, 'rebuilt', 'a.img'), join(dir, 'rebuilt', 'b.img'));
  }, 120_000);

  it('volumes that existed before init hold unknown bytes: no base at seq 0, a point before the first base is refused', async () => {
    const g = join(dir, 'g');
    for (const v of ['a', 'b']) { writeFileSync(join(dir, `${v}.img`), ''); truncateSync(join(dir, `${v}.img`), 1 * MiB); }
    copyFileSync(join(dir, 'a.img'), join(dir, 'a0.img'));
    expect(jshipJson('init', g, '--volume', `a=${join(dir, 'a.img')}`, '--volume', `b=${join(dir, 'b.img')}:1M`, '--journal-size', '16M')).toExit(0);
    expect(JSON.parse(readFileSync(join(g, 'group.json'), 'utf8')).zeroedTs).toBeUndefined();
    expect(jshipJson('mark', g, 'm0')).toExit(0);
    expect(jshipJson('export', g, '--to', `${join(dir, 'tapes')}/`)).toExit(0);
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, join(dir, 'tapes'))).toExit(0);
    const tl = jshipJson('timeline', rep).out;
    expect(tl.bases).toEqual([]);
    expect(tl.markers[0]).toMatchObject({ name: 'm0', restorable: false });
    expect(jshipJson('restore', rep, '--marker', 'm0', '--target', join(dir, 'x/'))).toExit(1);
  });

  it('a zeroedTs that is not a decimal ns string is refused, in a label (nothing imported) and in group.json (naming the field)', async () => {
    const g = join(dir, 'g');
    expect(jshipJson('init', g, '--volume', `a=${join(dir, 'a.img')}:1M`, '--journal-size', '16M')).toExit(0);
    expect(jshipJson('export', g, '--to', `${join(dir, 'tapes')}/`, '--allow-empty')).toExit(0);
    const [tape] = readdirSync(join(dir, 'tapes')).filter((f) => f.endsWith('.tar.zst'));
    for (const bad of ['soon', '-1', '1'.repeat(20)]) {
      const forged = join(dir, `forged-${bad.length}.tar.zst`);
      writeFileSync(forged, await relabel(readFileSync(join(dir, 'tapes', tape!)), (l) => ({ ...l, zeroedTs: bad })));
      const r = jshipJson('import', join(dir, `rep-${bad.length}`), forged);
      expect(r.code, bad).toBe(1);
      expect(r.out.tapes[0]).toMatchObject({ outcome: 'refused', code: 'TAPE_BAD_LABEL' });
      expect(r.out.tapes[0].message).toMatch(/zeroedTs is not a decimal string of nanoseconds/);
    }
    const cfg = JSON.parse(readFileSync(join(g, 'group.json'), 'utf8'));
    writeFileSync(join(g, 'group.json'), JSON.stringify({ ...cfg, zeroedTs: 12 }));
    const st = jshipJson('status', g);
    expect(st).toExit(1);
    expect(st.out.error).toMatchObject({ code: 'GROUP_BAD_CONFIG' });
    expect(st.out.error.message).toMatch(/zeroedTs must be a decimal string of nanoseconds/);
  });
});
