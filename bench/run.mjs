// npm run bench: every benchmark, each a ratio against a native peer measured
// in the same run on the same data. Results: a table on stdout and
// bench/out/results.json. Record them in docs/BENCHMARKS.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { benchAppend } from './append.mjs';
import { benchTapes, benchTapeRss } from './tapes.mjs';
import { benchFullRestore, benchHotSpot } from './restore.mjs';
import { benchNbd } from './nbd.mjs';
import { benchS3 } from './s3.mjs';
import { benchLink } from './link.mjs';
import { benchBwlimit } from './bwlimit.mjs';
import { benchMount, benchMountMap } from './mount.mjs';
import { benchParity, benchDigest } from './media.mjs';
import { benchSustained } from './sustained.mjs';
import { machine, SMOKE } from './lib.mjs';

const only = process.argv[2];
const benches = { append: benchAppend, tapes: benchTapes, restore: benchFullRestore, hotspot: benchHotSpot, rss: benchTapeRss, nbd: benchNbd, s3: benchS3, link: benchLink, bwlimit: benchBwlimit, mount: benchMount, mountmap: benchMountMap, parity: benchParity, digest: benchDigest, sustained: benchSustained };
const all = [];
console.log(`machine: ${machine()}`);
for (const [name, fn] of Object.entries(benches)) {
  if (only && only !== name) continue;
  let got;
  try {
    got = await fn();
  } catch (e) {
    // One benchmark that cannot run (no disk space, a peer missing) does not cost the others their figures.
    console.error(`${name}: not measured: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
    continue;
  }
  for (const r of got) {
    all.push(r);
    if (r.jship.maxRecords !== undefined) {
      console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(24)} lag median ${Math.round(r.jship.medianRecords)} records / ${r.jship.medianSeconds.toFixed(2)} s, max ${r.jship.maxRecords} records / ${r.jship.maxSeconds.toFixed(2)} s (${r.jship.samples} samples)`);
      continue;
    }
    if (r.jship.extents !== undefined) {
      console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(40)} ${r.jship.extents} extents, map ${r.jship.mapMiB.toFixed(0)} MiB, RSS grew ${r.jship.rssGrowthMiB.toFixed(0)} MiB (limit ${r.limitMiB} MiB), built in ${r.jship.secs.toFixed(1)} s`);
      continue;
    }
    if (r.jship.readySecs !== undefined) {
      console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(40)} ready ${r.jship.readySecs.toFixed(2)} s, first 4 KiB read ${r.jship.secs.toFixed(2)} s after start, peak RSS ${r.jship.rssMiB.toFixed(0)} MiB (limit ${r.limitMiB} MiB)`);
      continue;
    }
    if (r.latency) {
      const lat = (x) => `write p99 ${x.p99Ms.toFixed(3)} ms (p50 ${x.p50Ms.toFixed(3)}), flush p99 ${x.flushP99Ms.toFixed(3)} ms (p50 ${x.flushP50Ms.toFixed(3)}), ${Math.round(x.iops)} IOPS`;
      console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(32)} jship ${lat(r.jship)}   ${r.peer.name} ${lat(r.peer)}   p99 (write + flush) ratio ${r.ratio.toFixed(2)}×`);
      continue;
    }
    if (r.sustained) {
      console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(32)} jship ${r.jship.mibPerSec.toFixed(1)} MiB/s (${r.jship.exports} exports, ${(r.jship.tapeBytes / 1024 ** 3).toFixed(2)} GiB of tapes, fio errors ${r.jship.errors}, peak RSS ${r.jship.rssMiB.toFixed(0)} MiB)   ${r.peer.name} ${r.peer.mibPerSec.toFixed(1)} MiB/s   ratio ${r.ratio.toFixed(2)}×${r.jship.diskMiBPerSec !== null && r.peer.diskMiBPerSec !== null ? `   (the disk wrote ${r.jship.diskMiBPerSec.toFixed(0)} MiB/s under jship, ${(r.jship.diskMiBPerSec / r.jship.mibPerSec).toFixed(2)} bytes per byte written; ${r.peer.diskMiBPerSec.toFixed(0)} MiB/s under dd)` : ''}`);
      continue;
    }
    if (r.jship.rssMiB !== undefined && !r.peer) {
      console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(40)} peak RSS ${r.jship.rssMiB.toFixed(0)} MiB (limit ${r.limitMiB} MiB) in ${r.jship.secs.toFixed(1)} s`);
      continue;
    }
    const extra = r.jship.recordsPerSec ? `  ${Math.round(r.jship.recordsPerSec)} records/s` : r.jship.iops ? `  ${Math.round(r.jship.iops)} IOPS vs ${Math.round(r.peer.iops)}` : '';
    const rssNote = r.jship.rssPullMiB !== undefined ? `  (peak RSS: pull ${r.jship.rssPullMiB.toFixed(0)} MiB, serve ${r.jship.rssServeMiB.toFixed(0)} MiB; receiver CPU-s per GiB: jship ${r.jship.receiverCpuPerGiB.toFixed(1)}, peer ${r.peer.receiverCpuPerGiB.toFixed(1)})` : '';
    const more = rssNote || (r.jship.segmentsRead !== undefined ? `  (${r.jship.segmentsRead}/${r.jship.segments} segments read, identical: ${r.jship.identical}, RSS ${r.jship.rssMiB.toFixed(0)} MiB)` : '');
    console.log(`${r.bench.padEnd(8)} ${r.case.padEnd(16)} jship ${r.jship.mibPerSec.toFixed(1).padStart(7)} MiB/s${extra}   ${r.peer.name} ${r.peer.mibPerSec.toFixed(1).padStart(7)} MiB/s   ratio ${r.ratio.toFixed(2)}×${more}`);
  }
}
// A smoke run's figures mean nothing: they never replace a real run's results.
if (!SMOKE) {
  mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./out/results.json', import.meta.url), JSON.stringify({ machine: machine(), date: new Date().toISOString(), results: all }, null, 2));
}
