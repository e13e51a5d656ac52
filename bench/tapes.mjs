// Tape benchmarks: export (journal -> tape) against `tar -c | zstd -1 -T2` of the
// same bytes ending with an fsync (two compression threads, as jship has); import +
// verify against what import does, with standard tools: copy the tape into place
// and fsync it, then `zstd -d | openssl dgst -sha256` of the stored copy;
// peak RSS of export and import for a 4 GiB volume's base plus a million records.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createGroup, openGroup } from '../dist/index.js';
import { MiB, scratch, timeCommand, median, mbps, runJship, filledGroup, warmRounds } from './lib.mjs';

const WORDS = 'the of and to in is was for on that with as by at from journal volume record tape base sequence restore marker primary secondary export import purge ring segment'.split(' ');

/** Mixed data: a third random, a third zeros, a third text, in 1 MiB blocks. */
function mixedBlock(i) {
  if (i % 3 === 0) return randomBytes(MiB);
  if (i % 3 === 1) return Buffer.alloc(MiB);
  let s = '';
  while (s.length < MiB) s += `${WORDS[Math.floor(Math.random() * WORDS.length)]}${Math.random() < 0.1 ? '.\n' : ' '}`;
  return Buffer.from(s.slice(0, MiB));
}

export async function benchTapes({ runs = 3, sizeMiB = Number(process.env.JSHIP_BENCH_TAPE_MIB ?? 1024) } = {}) {
  const results = [];
  // The journal and its pristine copy, the volume, two sets of tapes, the peer's archive, a replica and the peer's copy.
  const { dir, cleanup } = scratch('tapes', { needMiB: 7 * sizeMiB + 256 });
  try {
    const { g } = await filledGroup(dir, sizeMiB, mixedBlock);
    const journalBytes = sizeMiB * MiB;
    // Export purges the journal: each run starts from a pristine copy of the group directory.
    spawnSync('cp', ['-a', g, `${g}.orig`]);
    const tapeDir = join(dir, `tapes${runs - 1}`);
    const [exportTimes, peerTimes] = warmRounds(runs, (r) => {
      spawnSync('rm', ['-rf', g]);
      spawnSync('cp', ['-a', `${g}.orig`, g]);
      spawnSync('sync');
      const t = join(dir, `tapes${r}`);
      // The last run's outputs are kept, for the import and the sizes.
      return [
        () => {
          const { secs } = runJship(['export', g, '--to', `${t}/`]);
          if (r < runs - 1) spawnSync('rm', ['-rf', t]);
          return secs;
        },
        () => {
          const secs = timeCommand('sh', ['-c', `tar -cf - -C ${dir} vol.img | zstd -1 -T2 -q -o ${dir}/peer${r}.tar.zst && sync ${dir}/peer${r}.tar.zst`]);
          if (r < runs - 1) spawnSync('rm', ['-f', `${dir}/peer${r}.tar.zst`]);
          return secs;
        },
      ];
    });
    // The set is every tape the last export wrote (one, unless a server had been writing: docs/OPERATIONS.md).
    const tapes = readdirSync(tapeDir).filter((n) => n.endsWith('.tar.zst')).sort().map((n) => join(tapeDir, n));
    const tapeBytes = tapes.reduce((n, t) => n + statSync(t).size, 0);
    const peerBytes = statSync(`${dir}/peer${runs - 1}.tar.zst`).size;
    const ej = median(exportTimes);
    const ep = median(peerTimes);
    results.push({
      bench: 'export', case: `${sizeMiB} MiB mixed`, bytes: journalBytes,
      jship: { secs: ej, mibPerSec: mbps(journalBytes, ej), tapeBytes, runs: exportTimes },
      peer: { name: 'tar | zstd -1 -T2 + sync', secs: ep, mibPerSec: mbps(journalBytes, ep), tapeBytes: peerBytes, runs: peerTimes },
      ratio: ep / ej,
    });
    const [importTimes, verifyPeer] = warmRounds(runs, (r) => {
      const rep = join(dir, `rep${r}`);
      const copy = join(dir, `copy${r}`);
      return [
        () => {
          const { secs } = runJship(['import', rep, ...tapes]);
          spawnSync('rm', ['-rf', rep]);
          return secs;
        },
        () => {
          const secs = timeCommand('sh', ['-c', `mkdir ${copy} && cp ${tapes.join(' ')} ${copy}/ && sync ${copy}/* && for t in ${copy}/*; do zstd -d -c -q $t | openssl dgst -sha256; done > /dev/null`]);
          spawnSync('rm', ['-rf', copy]);
          return secs;
        },
      ];
    });
    const ij = median(importTimes);
    const ip = median(verifyPeer);
    results.push({
      bench: 'import', case: `${sizeMiB} MiB, ${tapes.length} tapes`, bytes: journalBytes,
      jship: { secs: ij, mibPerSec: mbps(journalBytes, ij), runs: importTimes },
      peer: { name: 'cp + sync, zstd -d | openssl dgst -sha256', secs: ip, mibPerSec: mbps(journalBytes, ip), runs: verifyPeer },
      ratio: ip / ij,
    });
  } finally {
    cleanup();
  }
  return results;
}

/** Peak RSS of export, import and restore: a 4 GiB volume's base plus a million update records. */
export async function benchTapeRss({ volumeGiB = Number(process.env.JSHIP_BENCH_RSS_GIB ?? 4), records = Number(process.env.JSHIP_BENCH_RSS_RECORDS ?? 1_000_000) } = {}) {
  const journalMiB = Math.ceil((records * 2112) / MiB + 128);
  // The journal, the volume's 64 MiB of data, and about a journal's worth of tapes, replica and restored image.
  const { dir, cleanup } = scratch('rss', { needMiB: 2 * journalMiB + 256 });
  try {
    const g = join(dir, 'g');
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, 'vol.img'), size: volumeGiB * 1024 * MiB }] }], journalSize: journalMiB * MiB }); // one record slot per 2 KiB of journal
    const group = await openGroup(g, { checkpointIntervalMs: 0 });
    // Some data in the volume so that the base is not all zero chunks: 64 MiB of random, spread over it.
    for (let i = 0; i < 64; i++) await group.write(0, i * volumeGiB * 16 * MiB, randomBytes(MiB));
    const block = randomBytes(512);
    let next = 0;
    const size = volumeGiB * 1024 * MiB;
    const worker = async () => {
      while (next < records) {
        const i = next++;
        await group.write(0, (i * 7919 * 512) % size, block);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    await group.close();
    const ex = runJship(['export', g, '--to', `${dir}/tapes/`, '--base']);
    const im = runJship(['import', join(dir, 'rep'), `${dir}/tapes`]);
    const re = runJship(['restore', join(dir, 'rep'), '--target', join(dir, 'restored.img')]);
    return [
      { bench: 'rss', case: `export --base ${volumeGiB} GiB + ${records} records`, jship: { secs: ex.secs, rssMiB: ex.rssMiB }, limitMiB: 256 },
      { bench: 'rss', case: `import of the same`, jship: { secs: im.secs, rssMiB: im.rssMiB }, limitMiB: 256 },
      { bench: 'rss', case: `restore of the same (latest point)`, jship: { secs: re.secs, rssMiB: re.rssMiB }, limitMiB: 256 },
    ];
  } finally {
    cleanup();
  }
}
