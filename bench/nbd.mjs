// NBD capture: fio through `jship serve` (every byte journaled, then written
// to the PVOL) against `nbdkit file` and `qemu-nbd --cache=writeback -e 4`
// serving the same 1 GiB file over a Unix socket, in the same run: two
// throughput jobs, and the completion latency of 4 KiB writes each followed
// by a FLUSH (fio fsync=1: fio's nbd engine sends a FLUSH for fsync and
// refuses fdatasync with EINVAL; qd 1, 10 s). Also the jship server's peak RSS.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGroup } from '../dist/index.js';
import { MiB, SMOKE, scratch, median, peakRssMiB } from './lib.mjs';

const JSHIP = new URL('../bin/jship', import.meta.url).pathname;
const SIZE = (SMOKE ? 64 : 1024) * MiB;

const JOBS = [
  { name: '4 KiB randwrite qd32 ×2', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', '--numjobs=2', `--io_size=${SMOKE ? '8M' : '256M'}`], journal: (SMOKE ? 64 : 1024) * MiB },
  { name: '1 MiB seqwrite qd8', args: ['--rw=write', '--bs=1M', '--iodepth=8', '--numjobs=1', `--io_size=${SMOKE ? '32M' : '1G'}`], journal: (SMOKE ? 64 : 1536) * MiB },
  { name: '4 KiB randwrite qd1 fsync=1', args: ['--rw=randwrite', '--bs=4k', '--iodepth=1', '--numjobs=1', '--fsync=1', '--time_based', `--runtime=${process.env.JSHIP_BENCH_LATENCY_SECS ?? (SMOKE ? 1 : 10)}`], journal: (SMOKE ? 64 : 1024) * MiB, latency: true },
];

/**
 * The volume every server gets: 1 GiB written whole with zeroes, then synced, as a volume that holds data
 * is. A sparse file would time block allocation instead, and on this VM's thin-provisioned disk that varies
 * tenfold with what the run before freed (measured: 0.3 to 4 s for the same 1 GiB of writes).
 */
function volumeFile(dir) {
  const path = join(dir, 'vol.img');
  const r = spawnSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=8M', `count=${SIZE / (8 * MiB)}`, 'conv=fdatasync'], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`cannot write ${path}`);
  return path;
}

const SERVERS = {
  jship: async (dir, sock, journal) => {
    const g = join(dir, 'g');
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: volumeFile(dir), size: SIZE }] }], journalSize: journal });
    return spawn(JSHIP, ['serve', g, '--socket', sock], { stdio: ['ignore', 'ignore', 'ignore'] });
  },
  'nbdkit file': async (dir, sock) => spawn('nbdkit', ['--foreground', '--unix', sock, 'file', `file=${volumeFile(dir)}`], { stdio: 'ignore' }),
  'qemu-nbd': async (dir, sock) => spawn('qemu-nbd', ['--persistent', '--cache=writeback', '-e', '4', '-f', 'raw', '-k', sock, volumeFile(dir)], { stdio: 'ignore' }),
};

async function ready(sock, proc) {
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}`);
    if (existsSync(sock) && spawnSync('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]).status === 0) return;
    await sleep(50);
  }
  throw new Error(`no server on ${sock}`);
}

async function runOnce(server, job) {
  const { dir, cleanup } = scratch('nbd', { needMiB: (SIZE + job.journal) / MiB + 256 });
  const sock = join(dir, 's.sock');
  const proc = await SERVERS[server](dir, sock, job.journal);
  try {
    await ready(sock, proc);
    // What the set-up wrote (the volume, jship's journal) is on disk before the clock starts, for every server.
    spawnSync('sync');
    const r = spawnSync('fio', ['--name=bench', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${sock}`, `--size=${SIZE}`, '--end_fsync=1',
      '--group_reporting', '--output-format=json', ...job.args], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`fio against ${server} failed: ${r.stderr}${(r.stdout ?? '').slice(0, Math.max(0, (r.stdout ?? '').indexOf('{')))}`);
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
    if (j.error !== 0) throw new Error(`fio against ${server}: error ${j.error}`);
    const rss = peakRssMiB(proc.pid);
    const pct = j.write.clat_ns?.percentile ?? {};
    // With fdatasync=1 each write is followed by a FLUSH, timed on its own (fio's "sync" latencies).
    const sync = j.sync?.lat_ns?.percentile ?? {};
    return {
      iops: j.write.iops, mibPerSec: j.write.bw_bytes / MiB, rssMiB: rss, p99Ms: (pct['99.000000'] ?? NaN) / 1e6, p50Ms: (pct['50.000000'] ?? NaN) / 1e6,
      flushP99Ms: (sync['99.000000'] ?? NaN) / 1e6, flushP50Ms: (sync['50.000000'] ?? NaN) / 1e6,
    };
  } finally {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
    cleanup();
  }
}

export async function benchNbd({ runs = SMOKE ? 1 : 2 } = {}) {
  const results = [];
  for (const job of JOBS) {
    const got = {};
    for (let r = 0; r < runs; r++) {
      for (const server of Object.keys(SERVERS)) (got[server] ??= []).push(await runOnce(server, job));
    }
    const med = (s) => {
      const xs = got[s];
      const m = median(xs.map((x) => x.mibPerSec));
      return {
        iops: median(xs.map((x) => x.iops)), mibPerSec: m, rssMiB: Math.max(...xs.map((x) => x.rssMiB)), p99Ms: median(xs.map((x) => x.p99Ms)), p50Ms: median(xs.map((x) => x.p50Ms)),
        flushP99Ms: median(xs.map((x) => x.flushP99Ms)), flushP50Ms: median(xs.map((x) => x.flushP50Ms)),
        // Every run, for the ranges in docs/BENCHMARKS.md.
        runs: xs.map((x) => ({ mibPerSec: x.mibPerSec, p99Ms: x.p99Ms, flushP99Ms: x.flushP99Ms })),
      };
    };
    const j = med('jship');
    for (const peer of ['nbdkit file', 'qemu-nbd']) {
      const p = med(peer);
      // For the latency job the ratio is of p99 latencies of a write plus its FLUSH (lower is better; goal ≤ 2× nbdkit's).
      const lat = (x) => x.p99Ms + x.flushP99Ms;
      results.push({ bench: 'nbd', case: job.name, jship: j, peer: { name: peer, ...p }, ratio: job.latency ? lat(j) / lat(p) : j.mibPerSec / p.mibPerSec, ...(job.latency ? { latency: true } : {}) });
    }
    results.push({ bench: 'nbd', case: `${job.name}: server RSS`, jship: { rssMiB: j.rssMiB, secs: 0 }, limitMiB: 256 });
  }
  return results;
}
