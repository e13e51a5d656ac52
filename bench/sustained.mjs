// Sustained capture (DESIGN, issue 16): 1 MiB sequential writes through
// `jship serve` for 60 s (fio, qd 8, end_fsync) while `jship export` to a
// tape directory runs every 10 s, the journal sized for about 20 s of
// writes, so that exports must keep purging it. Against `dd bs=1M
// oflag=direct` of the same total bytes to the same file system. Journal,
// PVOL and tapes all land on one disk (issue 16 put the physical limit at
// about half the disk's rate): goal ≥ 0.4× dd, no write refused, server peak
// RSS ≤ 256 MiB. It also prints what the disk wrote meanwhile, per byte fio
// wrote, and under dd (/sys/dev/block/…/stat: the whole disk's writes).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGroup } from '../dist/index.js';
import { MiB, SMOKE, scratch, needSpace, timeCommand, peakRssMiB, deviceWrites } from './lib.mjs';

const JSHIP = new URL('../bin/jship', import.meta.url).pathname;
const VOLUME = (SMOKE ? 256 : 4096) * MiB;
// JSHIP_BENCH_ZSTD_LEVEL=-1: the exports run with --zstd-level -1 (the default level otherwise).
const LEVEL = process.env.JSHIP_BENCH_ZSTD_LEVEL ? ['--zstd-level', process.env.JSHIP_BENCH_ZSTD_LEVEL] : [];

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/** jship's sustained rate on the benchmark's machine was 180-290 MiB/s (docs/BENCHMARKS.md): the disk is planned for this much. */
const RATE_GUESS_MIB = 300;

/** dd of `mib` MiB of zeroes with O_DIRECT into `file`: MiB/s, and the MiB/s its disk wrote meanwhile (null: not known). */
function dd(file, mib, written) {
  const before = written?.();
  const secs = timeCommand('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'oflag=direct', 'conv=fdatasync']);
  const disk = written ? (written() - before) / MiB / secs : null;
  spawnSync('rm', ['-f', file]);
  return { mibPerSec: mib / secs, disk };
}

export async function benchSustained({ secs = Number(process.env.JSHIP_BENCH_SUSTAINED_SECS ?? (SMOKE ? 4 : 60)), every = Number(process.env.JSHIP_BENCH_EXPORT_EVERY_SECS ?? (SMOKE ? 1 : 10)) } = {}) {
  const calibMiB = SMOKE ? 64 : 1024;
  const { dir, cleanup } = scratch('sustained', { needMiB: calibMiB + 256 });
  try {
    // The disk's rate first, to size the journal for about 20 s of writes at half of it.
    const written = deviceWrites(dir);
    const calib = dd(join(dir, 'calib.bin'), calibMiB).mibPerSec;
    // Smoke: a small journal, so that exports under journal pressure happen within seconds.
    const journal = (SMOKE ? 64 : Math.min(8192, Math.max(512, Math.round((20 * calib) / 2)))) * MiB;
    // The journal, the volume, and what the run writes twice over (its tapes, then the peer's dd of the same bytes),
    // at RATE_GUESS_MIB: a faster jship needs more, and the check before the peer's dd says so.
    needSpace('sustained', dir, (journal + VOLUME) / MiB + 2 * secs * RATE_GUESS_MIB + 512);
    const g = join(dir, 'g');
    await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, 'vol.img'), size: VOLUME }] }], journalSize: journal });
    const tapes = join(dir, 'tapes');
    mkdirSync(tapes);
    const sock = join(dir, 's.sock');
    const server = spawn(JSHIP, ['serve', g, '--socket', sock, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let serverLog = '';
    server.stderr.on('data', (d) => { serverLog += d; });
    // The owner's events (JSON lines): exports and writers that waited for journal space, for the report.
    const t00 = Date.now();
    const events = [];
    let partial = '';
    server.stdout.on('data', (d) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop();
      for (const line of parts) {
        try {
          const e = JSON.parse(line);
          if (/^(export-|writer-|journal-)/.test(e.event ?? '')) events.push({ ...e, t: (Date.now() - t00) / 1000 });
        } catch { /* not an event line */ }
      }
    });
    const timeline = () => events.map((e) => `  ${e.t.toFixed(1)} s ${e.event}${e.seconds !== undefined ? ` ${e.seconds.toFixed(1)} s` : ''}${e.tapeBytes !== undefined ? ` ${Math.round(e.tapeBytes / MiB)} MiB` : ''}${e.usage ? ` (${e.usage})` : ''}${e.error ? `: ${e.error}` : ''}`).join('\n');
    try {
      for (let i = 0; !(existsSync(sock) && spawnSync('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]).status === 0); i++) {
        if (server.exitCode !== null || i > 600) throw new Error(`jship serve did not start: ${serverLog}`);
        await sleep(50);
      }
      let stop = false;
      let exports = 0;
      let tapeBytes = 0;
      // Like a timer unit: an export starts every `every` seconds; one that overruns its tick delays the next.
      const exporter = (async () => {
        const start = Date.now();
        for (let tick = 1; !stop; tick++) {
          const wait = start + tick * every * 1000 - Date.now();
          if (wait > 0) await sleep(wait);
          else tick = Math.floor((Date.now() - start) / (every * 1000)); // overran: start now, then on the next tick
          if (stop) break;
          const r = await run(JSHIP, ['export', g, '--to', tapes, ...LEVEL, '--json']);
          if (r.code !== 0) throw new Error(`export failed: ${r.out} ${r.err}`);
          const j = JSON.parse(r.out);
          exports++;
          tapeBytes += Number(j.tapeBytes ?? 0);
        }
      })();
      // Awaited once fio ends, and its failure reported then (unhandled before that, it would end the process unexplained).
      exporter.catch(() => undefined);
      const t0 = process.hrtime.bigint();
      const written0 = written?.();
      const fio = await run('fio', ['--name=sustained', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${sock}`, `--size=${VOLUME}`, '--rw=write', '--bs=1M', '--iodepth=8',
        '--time_based', `--runtime=${secs}`, '--end_fsync=1', '--output-format=json']);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      // What the disk took while fio ran: journal, PVOL and tapes (and anything else on that disk).
      const disk = written ? (written() - written0) / MiB / wall : null;
      stop = true;
      await exporter;
      if (fio.code !== 0) throw new Error(`fio failed: ${fio.err.split('\n').slice(0, 3).join('\n')}\nthe owner's events:\n${timeline()}`);
      if (process.env.JSHIP_BENCH_VERBOSE) process.stderr.write(`the owner's events:\n${timeline()}\n`);
      const job = JSON.parse(fio.out.slice(fio.out.indexOf('{'))).jobs[0];
      const bytes = job.write.io_bytes;
      const rssMiB = peakRssMiB(server.pid);
      // The peer writes the same total once, to the same file system (the tapes stay: the peer's disk is as full as jship's was).
      const mibPerSec = bytes / MiB / wall;
      try {
        needSpace('sustained', dir, bytes / MiB + 256);
      } catch (e) {
        throw new Error(`jship wrote ${mibPerSec.toFixed(1)} MiB/s, but the peer's dd of the same bytes does not fit beside the run's tapes: ${e.message}`);
      }
      const peer = dd(join(dir, 'peer.bin'), Math.round(bytes / MiB), written);
      return [{
        bench: 'sustained', case: `1 MiB seqwrite ${secs} s, export every ${every} s`, sustained: true,
        jship: { mibPerSec, secs: wall, exports, tapeBytes, errors: job.error, rssMiB, journalMiB: journal / MiB, diskMiBPerSec: disk },
        peer: { name: 'dd oflag=direct', mibPerSec: peer.mibPerSec, diskMiBPerSec: peer.disk }, ratio: mibPerSec / peer.mibPerSec,
      }];
    } finally {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
  } finally {
    cleanup();
  }
}
