// Restore benchmarks: a full restore of a volume from base tapes against
// `dd bs=1M conv=fdatasync` of the same size; a full restore of a volume a tenth
// written (the rest never written: holes in the restored file) against
// `qemu-img convert -n -O raw` of the image, which skips zeros too; and a hot-spot workload (90 % of
// writes on 10 % of the blocks) restored coalesced against a naive in-order
// replay of every record, in the same run on the same tapes.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createGroup, openGroup } from '../dist/index.js';
import { MiB, scratch, timeCommand, median, mbps, runJship, filledGroup, warmRounds } from './lib.mjs';

const run = (args) => runJship(args, { json: true });

export async function benchFullRestore({ runs = 3, sizeMiB = Number(process.env.JSHIP_BENCH_RESTORE_MIB ?? 1024) } = {}) {
  // The volume, the journal, tapes, a replica, a restored image and dd's copy.
  const { dir, cleanup } = scratch('restore', { needMiB: 6 * sizeMiB + 256 });
  try {
    const { g, vol } = await filledGroup(dir, sizeMiB, (i) => (i % 2 ? randomBytes(MiB) : Buffer.alloc(MiB, i & 0xff)));
    run(['export', g, '--to', `${dir}/tapes/`, '--base']);
    run(['import', join(dir, 'rep'), `${dir}/tapes`]);
    // The set-up's writeback (volume, journal, tapes, replica) ends before the first round, for both sides.
    spawnSync('sync');
    const [j, d] = warmRounds(runs, (r) => [
      () => {
        const { secs } = run(['restore', join(dir, 'rep'), '--target', join(dir, `out${r}.img`)]);
        spawnSync('rm', ['-f', join(dir, `out${r}.img`)]);
        return secs;
      },
      () => {
        const secs = timeCommand('dd', [`if=${vol}`, `of=${join(dir, `dd${r}.img`)}`, 'bs=1M', 'conv=fdatasync', 'status=none']);
        spawnSync('rm', ['-f', join(dir, `dd${r}.img`)]);
        return secs;
      },
    ]);
    const js = median(j);
    const ds = median(d);
    return [
      { bench: 'restore', case: `full ${sizeMiB} MiB from base`, jship: { secs: js, mibPerSec: mbps(sizeMiB * MiB, js), runs: j }, peer: { name: 'dd bs=1M conv=fdatasync', secs: ds, mibPerSec: mbps(sizeMiB * MiB, ds), runs: d }, ratio: ds / js },
      await sparseRestore(runs, Number(process.env.JSHIP_BENCH_SPARSE_MIB ?? 4096)),
    ];
  } finally {
    cleanup();
  }
}

/** A volume of `sizeMiB`, one MiB in ten written with random bytes, restored whole from its base. */
async function sparseRestore(runs, sizeMiB) {
  // The written tenth six times over (volume, journal, tapes, replica, two restored images).
  const { dir, cleanup } = scratch('sparse', { needMiB: 6 * Math.ceil(sizeMiB / 10) + 256 });
  try {
    const g = join(dir, 'g');
    const vol = join(dir, 'vol.img');
    const written = Math.ceil(sizeMiB / 10);
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: vol, size: sizeMiB * MiB }] }], journalSize: (written + 64) * MiB });
    const group = await openGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < sizeMiB; i += 10) await group.write(0, i * MiB, randomBytes(MiB));
    await group.close();
    run(['export', g, '--to', `${dir}/tapes/`, '--base']);
    run(['import', join(dir, 'rep'), `${dir}/tapes`]);
    spawnSync('sync');
    const [j, q] = warmRounds(runs, (r) => {
      const out = join(dir, `out${r}.img`);
      const peer = join(dir, `qemu${r}.img`);
      return [
        () => {
          const { secs } = run(['restore', join(dir, 'rep'), '--target', out]);
          if (spawnSync('cmp', [out, vol]).status !== 0) throw new Error('the restored image differs from the volume');
          spawnSync('rm', ['-f', out]);
          return secs;
        },
        () => {
          spawnSync('truncate', ['-s', String(sizeMiB * MiB), peer]);
          const secs = timeCommand('qemu-img', ['convert', '-n', '-t', 'writeback', '-f', 'raw', '-O', 'raw', vol, peer]);
          // Checked as jship's output is: each round leaves the page cache as the other's does (cmp reads the holes).
          if (spawnSync('cmp', [peer, vol]).status !== 0) throw new Error('qemu-img\'s copy differs from the volume');
          spawnSync('rm', ['-f', peer]);
          return secs;
        },
      ];
    });
    const js = median(j);
    const qs = median(q);
    return { bench: 'restore', case: `${sizeMiB} MiB, 10 % written`, jship: { secs: js, mibPerSec: mbps(sizeMiB * MiB, js), runs: j }, peer: { name: 'qemu-img convert -n -O raw', secs: qs, mibPerSec: mbps(sizeMiB * MiB, qs), runs: q }, ratio: qs / js };
  } finally {
    cleanup();
  }
}

export async function benchHotSpot({ records = Number(process.env.JSHIP_BENCH_HOT_RECORDS ?? 1_000_000), sizeMiB = 256 } = {}) {
  const journalMiB = Math.ceil((records * 2112) / MiB + sizeMiB + 128);
  // The journal, the volume, and about a journal's worth of tapes and replica.
  const { dir, cleanup } = scratch('hot', { needMiB: 2 * journalMiB + sizeMiB });
  try {
    const g = join(dir, 'g');
    const size = sizeMiB * MiB;
    const blocks = size / 4096;
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, 'vol.img'), size }] }], journalSize: journalMiB * MiB }); // one record slot per 2 KiB of journal
    let group = await openGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < sizeMiB; i++) await group.write(0, i * MiB, randomBytes(MiB));
    await group.close();
    run(['export', g, '--to', `${dir}/tapes/`, '--base']);
    group = await openGroup(g, { checkpointIntervalMs: 0 });
    const data = randomBytes(512);
    let next = 0;
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const worker = async () => {
      while (next < records) {
        next++;
        const hot = rand() < 0.9;
        const block = hot ? Math.floor(rand() * blocks * 0.1) : Math.floor(blocks * 0.1 + rand() * blocks * 0.9);
        await group.write(0, block * 4096 + Math.floor(rand() * 8) * 512, data);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    await group.close();
    run(['export', g, '--to', `${dir}/tapes/`]);
    run(['import', join(dir, 'rep'), `${dir}/tapes`]);
    const naive = run(['restore', join(dir, 'rep'), '--target', join(dir, 'naive.img'), '--no-coalesce']);
    const coal = run(['restore', join(dir, 'rep'), '--target', join(dir, 'coalesced.img')]);
    const same = spawnSync('cmp', [join(dir, 'naive.img'), join(dir, 'coalesced.img')]).status === 0;
    return [{
      bench: 'restore', case: `hot spot, ${records} records`,
      jship: { secs: coal.secs, mibPerSec: mbps(size, coal.secs), segmentsRead: coal.out.segmentsRead, segments: coal.out.plan.segments, rssMiB: coal.rssMiB, identical: same },
      peer: { name: 'naive replay in order', secs: naive.secs, mibPerSec: mbps(size, naive.secs), rssMiB: naive.rssMiB },
      ratio: naive.secs / coal.secs,
    }];
  } finally {
    cleanup();
  }
}
