// Offline media: what --parity costs an export (tape bytes and time, against
// the same export without it and against `tar | zstd -1 -T1`), and what a
// point digest costs at mark time (milliseconds per GiB written since the
// last point, against reading those bytes with `cat`).
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, scratch, timeCommand, timeAsync, median, mbps, runJship, filledGroup } from './lib.mjs';

export async function benchParity({ runs = 3, sizeMiB = Number(process.env.JSHIP_BENCH_PARITY_MIB ?? 512) } = {}) {
  // The volume, the journal, tapes with parity and without.
  const { dir, cleanup } = scratch('parity', { needMiB: 5 * sizeMiB + 256 });
  try {
    // Incompressible data: the worst case for parity's share of the tape.
    const { g } = await filledGroup(dir, sizeMiB, () => randomBytes(MiB));
    spawnSync('cp', ['-a', g, `${g}.orig`]);
    const times = { plain: [], parity: [], peer: [] };
    const bytes = {};
    for (let r = 0; r < runs; r++) {
      for (const mode of ['plain', 'parity']) {
        spawnSync('rm', ['-rf', g, join(dir, 't')]);
        spawnSync('cp', ['-a', `${g}.orig`, g]);
        spawnSync('sync');
        times[mode].push(runJship(['export', g, '--to', `${join(dir, 't')}/`, ...(mode === 'parity' ? ['--parity', '10'] : [])]).secs);
        bytes[mode] = readdirSync(join(dir, 't')).filter((n) => n.endsWith('.tar.zst')).reduce((n, f) => n + statSync(join(dir, 't', f)).size, 0);
      }
      times.peer.push(timeCommand('sh', ['-c', `tar -cf - -C ${dir} vol.img | zstd -1 -T1 -q -o ${dir}/peer.tar.zst -f && sync ${dir}/peer.tar.zst`]));
    }
    const [p, q, peer] = [median(times.plain), median(times.parity), median(times.peer)];
    const journal = sizeMiB * MiB;
    return [
      {
        bench: 'parity', case: `${sizeMiB} MiB random, --parity 10`, bytes: journal,
        jship: { secs: q, mibPerSec: mbps(journal, q), tapeBytes: bytes.parity, overheadPct: ((bytes.parity / bytes.plain) - 1) * 100, plainSecs: p },
        peer: { name: 'tar | zstd -1 -T1 + sync', secs: peer, mibPerSec: mbps(journal, peer) },
        ratio: peer / q,
      },
      {
        bench: 'parity', case: `${sizeMiB} MiB random, without`, bytes: journal,
        jship: { secs: p, mibPerSec: mbps(journal, p), tapeBytes: bytes.plain },
        peer: { name: 'tar | zstd -1 -T1 + sync', secs: peer, mibPerSec: mbps(journal, peer) },
        ratio: peer / p,
      },
    ];
  } finally {
    cleanup();
  }
}

export async function benchDigest({ volumeMiB = Number(process.env.JSHIP_BENCH_DIGEST_VOLUME_MIB ?? 2048), writtenMiB = Number(process.env.JSHIP_BENCH_DIGEST_MIB ?? 512) } = {}) {
  const { createGroup, openGroup } = await import('../dist/index.js');
  const { dir, cleanup } = scratch('digest', { needMiB: volumeMiB + 3 * writtenMiB + 256 });
  try {
    const g = join(dir, 'g');
    const vol = join(dir, 'vol.img');
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: vol, size: volumeMiB * MiB }] }], journalSize: (writtenMiB * 2 + 64) * MiB });
    const group = await openGroup(g, { checkpointIntervalMs: 0 });
    // The first point after an open without a saved table reads the whole volume.
    // A mark returns once its marker is durable; its digest is done when an export could take it.
    const markAndDigest = async (name) => {
      const m = await group.mark(name);
      await group.digestsBetween(m.seq, m.seq);
    };
    const first = await timeAsync(() => markAndDigest('first'));
    const results = [];
    for (const [i, pattern] of ['sequential', 'scattered 64 KiB'].entries()) {
      const step = pattern === 'sequential' ? MiB : 64 * 1024;
      const n = (writtenMiB * MiB) / step;
      for (let k = 0; k < n; k++) {
        const off = pattern === 'sequential' ? k * step : ((k * 7919) % ((volumeMiB * MiB) / step)) * step;
        await group.write(0, off, randomBytes(step));
      }
      await group.flush();
      const secs = await timeAsync(() => markAndDigest(`after-${i}`));
      const peer = timeCommand('sh', ['-c', `head -c ${writtenMiB * MiB} ${vol} > /dev/null`]);
      results.push({
        bench: 'digest', case: `mark after ${writtenMiB} MiB ${pattern}`, bytes: writtenMiB * MiB,
        jship: { secs, mibPerSec: mbps(writtenMiB * MiB, secs), msPerGiB: (secs * 1000 * 1024) / writtenMiB, firstMarkSecs: first },
        peer: { name: 'head -c (page cache)', secs: peer, mibPerSec: mbps(writtenMiB * MiB, peer) },
        ratio: peer / secs,
      });
      await group.purge(group.journal.writtenSeq - 1n).catch(() => undefined);
    }
    await group.close();
    results.push({
      bench: 'digest', case: `first mark: whole ${volumeMiB} MiB volume`, bytes: volumeMiB * MiB,
      jship: { secs: first, mibPerSec: mbps(volumeMiB * MiB, first) },
      peer: { name: 'head -c (page cache)', secs: timeCommand('sh', ['-c', `cat ${vol} > /dev/null`]), mibPerSec: 0 },
      ratio: 0,
    });
    const last = results[results.length - 1];
    last.peer.mibPerSec = mbps(volumeMiB * MiB, last.peer.secs);
    last.ratio = last.peer.secs / first;
    return results;
  } finally {
    cleanup();
  }
}
