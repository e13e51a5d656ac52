// The direct link: 1 GiB of journal records pulled by a secondary
// (`jship link pull --once`: TLS-PSK, link tapes compressed and hashed,
// written, fsynced and imported) against a plain TLS socket copy of the same
// number of bytes with the receiver fsyncing as often (bench/tls-copy.mjs),
// in the same run. Then the lag of a pulling secondary behind `jship serve`
// under a steady fio write load, sampled from `jship status` every second.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGroup, openGroup } from '../dist/index.js';
import { MiB, SMOKE, scratch, median, mbps, timeCommand, runJship, peakRssMiB } from './lib.mjs';

const JSHIP = new URL('../bin/jship', import.meta.url).pathname;
const PEER = new URL('./tls-copy.mjs', import.meta.url).pathname;
const RELAY = new URL('./delay-relay.mjs', import.meta.url).pathname;
const DATA_MIB = SMOKE ? 32 : 1024;
const TAPE = (SMOKE ? 8 : 256) * MiB;
/** The lag run: fio's seconds, and the seconds before lag is sampled. */
const LAG_SECS = SMOKE ? 4 : 30;
const LAG_SETTLE_MS = SMOKE ? 1000 : 5000;

function jship(args) {
  const r = spawnSync(JSHIP, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`jship ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function started(args, what) {
  const p = spawn(JSHIP, [...args, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise((resolve, reject) => {
    p.stdout.on('data', (c) => { out += c; if (out.includes('"ready":true')) resolve(); });
    p.on('exit', (code) => reject(new Error(`${what} exited ${code}: ${out}`)));
  });
  return { p, ready: JSON.parse(out.split('\n').find((l) => l.includes('"ready":true'))) };
}

async function stop(p) {
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

/** A group with a registered secondary and 1 GiB of incompressible records to pull, kept as copies for each run; the peer's input file. */
async function prepare(dir) {
  const g = join(dir, 'g');
  await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, 'v.img'), size: 64 * MiB }] }], journalSize: (DATA_MIB + 128) * MiB });
  const key = join(g, 'link.key');
  const rep = join(dir, 'rep');
  // Register the secondary (its base: the 64 MiB volume), then write 1 GiB of incompressible records.
  const srv = await started(['link', 'serve', g, '--listen', '127.0.0.1:0'], 'link serve');
  jship(['link', 'pull', rep, '--from', srv.ready.listening, '--psk', key, '--name', 'bench', '--once']);
  await stop(srv.p);
  const group = await openGroup(g, { checkpointIntervalMs: 0 });
  for (let i = 0; i < DATA_MIB; i++) await group.write(0, (i % 64) * MiB, randomBytes(MiB));
  await group.close();
  spawnSync('cp', ['-a', g, `${g}.orig`]);
  spawnSync('cp', ['-a', rep, `${rep}.orig`]);
  const input = join(dir, 'peer-in');
  spawnSync('dd', ['if=/dev/urandom', `of=${input}`, 'bs=1M', `count=${DATA_MIB}`], { stdio: 'ignore' });
  return { dir, g, rep, key, input, keyHex: readFileSync(key, 'utf8').trim() };
}

async function portFrom(file) {
  while (!existsSync(file) || readFileSync(file, 'utf8') === '') await sleep(20);
  return readFileSync(file, 'utf8');
}

/** A delay relay in front of 127.0.0.1:PORT (bench/delay-relay.mjs); null when there is no delay. */
async function relay(dir, port, delayMs) {
  if (delayMs === 0) return null;
  const file = join(dir, 'relay-port');
  rmSync(file, { force: true });
  const p = spawn(process.execPath, [RELAY, file, String(port), String(delayMs)], { stdio: 'inherit' });
  return { p, port: await portFrom(file) };
}

/** One timed `link pull --once` of the prepared GiB (through a relay of `delayMs` each way), and one copy by the peer over `streams` connections. */
async function pullAndCopy(prep, { delayMs = 0, streams = 1 } = {}) {
  const { dir, g, rep, key, input, keyHex } = prep;
  for (const [from, to] of [[`${g}.orig`, g], [`${rep}.orig`, rep]]) {
    rmSync(to, { recursive: true, force: true });
    spawnSync('cp', ['-a', from, to]);
  }
  spawnSync('sync');
  const srv = await started(['link', 'serve', g, '--listen', '127.0.0.1:0', '--max-tape', String(TAPE)], 'link serve');
  const path = await relay(dir, srv.ready.listening.split(':').pop(), delayMs);
  const pull = runJship(['link', 'pull', rep, '--from', path ? `127.0.0.1:${path.port}` : srv.ready.listening, '--psk', key, '--once']);
  const serveRss = peakRssMiB(srv.p.pid);
  await stop(srv.p);
  if (path) await stop(path.p);
  spawnSync('sync');
  const portFile = join(dir, 'port');
  rmSync(portFile, { force: true });
  const recv = spawn('/usr/bin/time', ['-f', '%U %S', '-o', join(dir, 'recv-cpu'), process.execPath, PEER, 'recv', portFile, join(dir, 'peer-out'), String(DATA_MIB * MiB), String(TAPE), keyHex, String(streams)], { stdio: 'inherit' });
  const peerPath = await relay(dir, await portFrom(portFile), delayMs);
  const copy = timeCommand(process.execPath, [PEER, 'send', peerPath ? peerPath.port : readFileSync(portFile, 'utf8'), input, keyHex, String(streams)]);
  await new Promise((r) => (recv.exitCode !== null ? r() : recv.once('exit', r)));
  const recvCpu = readFileSync(join(dir, 'recv-cpu'), 'utf8').trim().split('\n').pop().split(' ').map(Number);
  if (peerPath) await stop(peerPath.p);
  rmSync(join(dir, 'peer-out'), { force: true });
  for (let i = 0; i < streams; i++) rmSync(join(dir, `peer-out.${i}`), { force: true });
  return { ours: pull.secs, theirs: copy, rss: { pull: pull.rssMiB, serve: serveRss }, cpu: { pull: pull.cpuSecs, recv: recvCpu[0] + recvCpu[1] } };
}

async function throughput(prep, runs, { delayMs = 0, streams = 1 } = {}) {
  const ours = [];
  const theirs = [];
  const rss = { pull: 0, serve: 0 };
  const cpu = { pull: [], recv: [] };
  // One pull and one copy untimed first: the first of each in an invocation was slow for both sides
  // (docs/BENCHMARKS.md, session 15), as every bench's first write after its set-up is on this VM (bench/lib.mjs, warmRounds).
  await pullAndCopy(prep, { delayMs, streams });
  for (let r = 0; r < runs; r++) {
    const one = await pullAndCopy(prep, { delayMs, streams });
    cpu.pull.push(one.cpu.pull);
    cpu.recv.push(one.cpu.recv);
    ours.push(one.ours);
    theirs.push(one.theirs);
    rss.pull = Math.max(rss.pull, one.rss.pull);
    rss.serve = Math.max(rss.serve, one.rss.serve);
  }
  const bytes = DATA_MIB * MiB;
  const j = median(ours);
  const p = median(theirs);
  const size = DATA_MIB === 1024 ? '1 GiB' : `${DATA_MIB} MiB`;
  return {
    bench: 'link', case: delayMs ? `${size} pull, ${2 * delayMs} ms RTT` : `${size} pull`,
    // The receiver's CPU-seconds per GiB: the pulling secondary's, the peer's receiving process's.
    jship: { mibPerSec: mbps(bytes, j), secs: j, runs: ours, rssPullMiB: rss.pull, rssServeMiB: rss.serve, receiverCpuPerGiB: (median(cpu.pull) * 1024) / DATA_MIB },
    peer: { name: streams > 1 ? `${streams} TLS copies` : 'TLS copy', mibPerSec: mbps(bytes, p), secs: p, runs: theirs, receiverCpuPerGiB: (median(cpu.recv) * 1024) / DATA_MIB }, ratio: p / j,
  };
}

async function lag(dir) {
  const g = join(dir, 'lg');
  await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, 'lv.img'), size: 256 * MiB }] }], journalSize: 512 * MiB });
  const sock = join(dir, 'nbd.sock');
  const srv = await started(['serve', g, '--socket', sock, '--link-listen', '127.0.0.1:0'], 'serve');
  const rep = join(dir, 'lrep');
  const pull = await started(['link', 'pull', rep, '--from', srv.ready.link, '--psk', join(g, 'link.key'), '--name', 'lag'], 'link pull');
  const fio = spawn('fio', ['--name=lag', '--ioengine=nbd', `--uri=nbd+unix:///?socket=${sock}`, '--size=256M', '--rw=randwrite', '--bs=4k', '--iodepth=8',
    '--rate=20m', '--time_based', `--runtime=${LAG_SECS}`, '--output-format=json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const samples = [];
  const t0 = Date.now();
  // Sampled while fio writes, and at least once (a smoke run's fio is short).
  while ((fio.exitCode === null || samples.length === 0) && Date.now() - t0 < 60_000) {
    await sleep(1000);
    const st = JSON.parse(jship(['status', g, '--json']));
    const l = st.link?.find((x) => x.name === 'lag');
    if (l && Date.now() - t0 > LAG_SETTLE_MS) samples.push({ records: Number(l.records), seconds: l.seconds ?? 0 });
  }
  await new Promise((r) => (fio.exitCode !== null ? r() : fio.once('exit', r)));
  await stop(pull.p);
  await stop(srv.p);
  const recs = samples.map((s) => s.records);
  const secs = samples.map((s) => s.seconds);
  return {
    bench: 'link', case: 'lag, fio 20 MiB/s 4k', jship: { samples: samples.length, medianRecords: median(recs), maxRecords: Math.max(...recs), medianSeconds: median(secs), maxSeconds: Math.max(...secs) },
  };
}

export async function benchLink({ runs = SMOKE ? 1 : 2 } = {}) {
  // The journal, the tapes at both ends, the replica, the peer's copy.
  const { dir, cleanup } = scratch('link', { needMiB: 5 * DATA_MIB + 512 });
  try {
    const prep = await prepare(dir);
    // The round trip: 50 ms, through a relay (bench/delay-relay.mjs), against four TLS copies in parallel over the same path.
    // JSHIP_BENCH_LINK_CASES=loopback (or rtt, lag; comma-separated) runs only those cases.
    const cases = (process.env.JSHIP_BENCH_LINK_CASES ?? 'loopback,rtt,lag').split(',');
    return [
      ...(cases.includes('loopback') ? [await throughput(prep, runs)] : []),
      ...(cases.includes('rtt') ? [await throughput(prep, runs, { delayMs: 25, streams: 4 })] : []),
      ...(cases.includes('lag') ? [await lag(dir)] : []),
    ];
  } finally {
    cleanup();
  }
}
