import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHostPort } from '../../src/io/sockets.js';
import { LinkPrimary } from '../../src/link/link-primary.js';
import { runPull } from '../../src/link/link-secondary.js';
import { importTapes } from '../../src/replica/import.js';
import { KiB, MiB, jshipJson, jshipProc, tempDir } from '../helpers.js';
import { events, linkedGroup, snapshot } from '../link/helpers.js';
import { client } from '../nbd/helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';

describe('jship mount at any point of a replica fed by tapes and the link', () => {
  const dir = tempDir();

  it('time, marker, seq and latest points of three volumes (two bases, one under live writes; tape and link records mixed): every export equals `jship restore` of the same point and the primary then, byte for byte', async () => {
    const { group, key } = await linkedGroup(dir, { a: 2 * MiB, b: 512 * KiB, c: 1 * MiB }, { journalSize: 64 * MiB, chunkSize: 64 * KiB });
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log });
    const tapes = join(dir, 'tapes');
    const rep = join(dir, 'rep');
    const pull = async (): Promise<void> => {
      await runPull({ replicaDir: rep, name: 'b', key, log: events().log, from: parseHostPort(primary.address as string, '--from'), once: true });
    };
    const importAll = async (): Promise<void> => {
      expect((await importTapes(rep, readdirSync(tapes).filter((n) => n.endsWith('.tar.zst')).map((n) => join(tapes, n)))).ok).toBe(true);
    };
    const points: Array<{ args: string[]; snap: Awaited<ReturnType<typeof snapshot>> }> = [];
    try {
      await writeMixed(group, 80, 1, { unaligned: true });
      // The first base is taken while writes go on.
      await Promise.all([exportTo(group, tapes, { base: true, keepUntilAck: true }), writeMixed(group, 40, 2, { unaligned: true })]);
      await writeMixed(group, 60, 3, { unaligned: true });
      await group.mark('m1');
      points.push({ args: ['--marker', 'm1'], snap: await snapshot(group, dir, 'p1') });
      await exportTo(group, tapes, { keepUntilAck: true });
      await importAll();
      // The link joins (its own base), then both sources carry the same records, cut differently.
      await pull();
      await writeMixed(group, 60, 4, { unaligned: true });
      await group.mark('m2');
      points.push({ args: ['--marker', 'm2'], snap: await snapshot(group, dir, 'p2') });
      await pull();
      await exportTo(group, tapes, { keepUntilAck: true });
      // A second full base under live writes.
      await Promise.all([exportTo(group, tapes, { base: true, keepUntilAck: true }), writeMixed(group, 40, 5, { unaligned: true })]);
      await writeMixed(group, 50, 6, { unaligned: true });
      const p3 = await snapshot(group, dir, 'p3');
      points.push({ args: ['--until', `@${p3.ts / 1_000_000_000n}.${String(p3.ts % 1_000_000_000n).padStart(9, '0')}`], snap: p3 });
      await writeMixed(group, 30, 7, { unaligned: true });
      const p4 = await snapshot(group, dir, 'p4');
      points.push({ args: ['--seq', String(p4.seq)], snap: p4 });
      await exportTo(group, tapes, { keepUntilAck: true });
      await importAll();
      await writeMixed(group, 30, 8, { unaligned: true });
      points.push({ args: [], snap: await snapshot(group, dir, 'p5') });
      await pull();
    } finally {
      await primary.stop();
      await group.close();
    }

    for (const [i, p] of points.entries()) {
      const out = join(dir, `restored-${i}`);
      const r = jshipJson('restore', rep, ...p.args, '--target', `${out}/`);
      expect(r).toExit(0);
      expect(r.out.plan.seq).toBe(Number(p.snap.seq));
      const srv = await jshipProc('mount', rep, ...p.args, '--socket', join(dir, `p${i}.sock`));
      try {
        expect(srv.ready.seq).toBe(Number(p.snap.seq));
        for (const x of srv.ready.exports as Array<{ name: string; uri: string }>) {
          const restored = join(out, `${x.name}.img`);
          // The restore is the primary then, and the mount is both.
          expect(readFileSync(restored).equals(readFileSync(p.snap.files[x.name]!)), `restore of ${x.name} at point ${i}`).toBe(true);
          client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', restored, x.uri);
          const copy = join(dir, `copy-${i}-${x.name}.img`);
          client('nbdcopy', x.uri, copy);
          expect(readFileSync(copy).equals(readFileSync(restored)), `nbdcopy of ${x.name} at point ${i}`).toBe(true);
        }
        // The second pass (nbdcopy) read the segments decompressed by the first from the read cache.
        const cache = readdirSync(join(rep, 'scratch')).filter((n) => new RegExp(`^mount-${srv.ready.pid}-[0-9a-f]{8}\\.cache$`).test(n));
        expect(cache).toHaveLength(1);
        expect(statSync(join(rep, 'scratch', cache[0]!)).size).toBeGreaterThan(0);
      } finally {
        expect(await srv.stop()).toBe(0);
      }
      expect(readdirSync(join(rep, 'scratch'))).toEqual([]);
    }
  }, 300_000);
});
