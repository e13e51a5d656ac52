// Instant access: `jship mount` of a point of a 4 GiB volume with a base and
// 1 000 000 update records (512 bytes, random places). Measured in one run on
// the same replica:
//  - time from starting `jship mount` to the first 4 KiB read through it
//    (qemu-io), and the mount's peak RSS;
//  - 4 KiB random reads, fio qd32 for 20 s, through the mount against
//    `nbdkit file` serving the image `jship restore` wrote of the same point:
//    a first run (cold: segments decompressed as they are met) and a second
//    (warm: from the mount's read cache);
//  - reading the whole volume once, 1 MiB at a time (nbdcopy to null:),
//    through the mount against `jship restore` of it into a file.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { createGroup, openGroup } from '../dist/index.js';
import { MiB, SMOKE, mbps, runJship, scratch, timeCommand, peakRssMiB } from './lib.mjs';

const JSHIP = new URL('../bin/jship', import.meta.url).pathname;

/** mulberry32: a seeded generator in [0, 1) with 32-bit integer steps (an LCG in doubles loses bits past 2^53). */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `jship mount … --json`: resolves with the process and its ready line, and the seconds from spawn to ready. */
async function startMount(args) {
  const t0 = process.hrtime.bigint();
  const proc = spawn(JSHIP, ['mount', ...args, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      const e = JSON.parse(l);
      if (e.ready) resolve(e);
    });
    proc.once('exit', (c) => reject(new Error(`jship mount exited ${c}`)));
  });
  return { proc, ready, t0 };
}

async function stop(proc) {
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
}

function fioRandRead(uri, size) {
  const r = spawnSync('fio', ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, `--size=${size}`, '--rw=randread', '--bs=4k', '--iodepth=32',
    `--runtime=${SMOKE ? 1 : 20}`, '--time_based', '--group_reporting', '--output-format=json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`fio ${uri} failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
  if (j.error !== 0) throw new Error(`fio ${uri}: error ${j.error}`);
  return { iops: j.read.iops, mibPerSec: j.read.bw_bytes / MiB };
}

export async function benchMount({ sizeMiB = Number(process.env.JSHIP_BENCH_MOUNT_MIB ?? 4096), records = Number(process.env.JSHIP_BENCH_MOUNT_RECORDS ?? 1_000_000) } = {}) {
  // The volume, the journal, tapes, a replica and a restored image.
  const { dir, cleanup } = scratch('mount', { needMiB: 5 * sizeMiB + Math.ceil((records * 2112 * 2) / MiB) + 512 });
  try {
    const g = join(dir, 'g');
    const size = sizeMiB * MiB;
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, 'vol.img'), size }] }], journalSize: Math.ceil((records * 2112) / MiB + sizeMiB + 128) * MiB });
    let group = await openGroup(g, { checkpointIntervalMs: 0 });
    // A quarter random, the rest compressible text-like blocks.
    const text = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(Math.ceil(MiB / 55))).subarray(0, MiB);
    for (let i = 0; i < sizeMiB; i++) await group.write(0, i * MiB, i % 4 === 0 ? randomBytes(MiB) : text);
    await group.close();
    runJship(['export', g, '--to', `${dir}/tapes/`, '--base']);
    group = await openGroup(g, { checkpointIntervalMs: 0 });
    let next = 0;
    const rand = seeded(4242);
    const data = randomBytes(512);
    const sectors = size / 512;
    const worker = async () => {
      while (next < records) {
        next++;
        await group.write(0, Math.floor(rand() * sectors) * 512, data);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    await group.close();
    runJship(['export', g, '--to', `${dir}/tapes/`]);
    const rep = join(dir, 'rep');
    runJship(['import', rep, `${dir}/tapes`]);
    const out = [];

    // Time to the first byte, and memory.
    const sock = join(dir, 'm.sock');
    const m = await startMount([rep, '--socket', sock]);
    try {
      const readySecs = Number(process.hrtime.bigint() - m.t0) / 1e9;
      const uri = m.ready.exports[0].uri;
      timeCommand('qemu-io', ['-r', '-f', 'raw', uri, '-c', 'read 0 4096']);
      const firstSecs = Number(process.hrtime.bigint() - m.t0) / 1e9;
      out.push({ bench: 'mount', case: `ttfb, ${sizeMiB} MiB + ${records} records`, jship: { secs: firstSecs, readySecs, rssMiB: peakRssMiB(m.proc.pid) }, limitMiB: 256 });

      // Random reads: the mount against nbdkit serving the restored image.
      const restored = join(dir, 'restored.img');
      const full = runJship(['restore', rep, '--target', restored]);
      // The first run meets cold segments (each decompressed once, into the read cache); the second reads them back.
      const cold = fioRandRead(uri, size);
      const warm = fioRandRead(uri, size);
      const peer = await nbdkitRandRead(dir, restored, size);
      out.push({ bench: 'mount', case: '4k randread qd32, cold', jship: { ...cold, rssMiB: peakRssMiB(m.proc.pid) }, peer: { name: 'nbdkit file (restored image)', ...peer }, ratio: cold.iops / peer.iops });
      out.push({ bench: 'mount', case: '4k randread qd32, warm', jship: { ...warm, rssMiB: peakRssMiB(m.proc.pid) }, peer: { name: 'nbdkit file (restored image)', ...peer }, ratio: warm.iops / peer.iops });

      // Reading the volume once: through the mount, or restore it first.
      spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
      const seq = timeCommand('nbdcopy', ['--request-size=1048576', uri, 'null:']);
      const rssMiB = peakRssMiB(m.proc.pid);
      const identical = spawnSync('cmp', [restored, join(dir, 'vol.img')]).status === 0;
      out.push({ bench: 'mount', case: 'read whole volume once', jship: { secs: seq, mibPerSec: mbps(size, seq), rssMiB, identical }, peer: { name: 'jship restore --target', secs: full.secs, mibPerSec: mbps(size, full.secs) }, ratio: full.secs / seq });
    } finally {
      await stop(m.proc);
    }
    return out;
  } finally {
    cleanup();
  }
}

/**
 * The extent map of a 1 TiB volume with a million records, built as a mount
 * builds it (newest first): 500 000 updates of 4 KiB at random places, then
 * a base of 1 MiB records over the whole volume. Its size and the time it
 * takes; no tapes (a 1 TiB base does not fit the benchmark's disk).
 */
export async function benchMountMap({ records = SMOKE ? 10_000 : 1_000_000 } = {}) {
  const { ExtentMap } = await import('../dist/core/extent-map.js');
  const size = SMOKE ? 2 ** 34 : 2 ** 40;
  global.gc?.();
  const heap0 = process.memoryUsage();
  const t0 = process.hrtime.bigint();
  const map = new ExtentMap(size);
  const rand = seeded(99);
  const updates = records / 2;
  for (let i = 0; i < updates; i++) {
    const at = Math.floor(rand() * (size / 4096)) * 4096;
    map.claim(at, at + 4096, i % 1000, (i % 256) * 4160);
  }
  const baseRecords = size / MiB;
  for (let k = baseRecords - 1; k >= 0; k--) map.claim(k * MiB, (k + 1) * MiB, 1000 + (k % 4096), 64);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const heap1 = process.memoryUsage();
  const mib = (n) => n / MiB;
  return [{ bench: 'mount', case: `map, ${SMOKE ? '16 GiB' : '1 TiB'}, ${updates} updates + ${baseRecords} base records`, jship: { secs, extents: map.count, mapMiB: mib(map.bytes), rssGrowthMiB: mib(heap1.rss - heap0.rss) }, limitMiB: 256 }];
}

async function nbdkitRandRead(dir, image, size) {
  const sock = join(dir, 'k.sock');
  const p = spawn('nbdkit', ['--foreground', '--readonly', '--unix', sock, 'file', `file=${image}`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 600 && !existsSync(sock); i++) await sleep(50);
    return fioRandRead(`nbd+unix:///?socket=${sock}`, size);
  } finally {
    await stop(p);
  }
}
