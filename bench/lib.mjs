// Shared helpers for the benchmarks: timing, peers run as child processes, reporting.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join } from 'node:path';

export const MiB = 1024 * 1024;

/**
 * JSHIP_BENCH_SMOKE=1: every size and duration cut to a few seconds' worth, so that `npm test` can check
 * that a benchmark still runs end to end and prints its figures (never how fast: its figures mean nothing).
 */
export const SMOKE = process.env.JSHIP_BENCH_SMOKE === '1';

// The smoke sizes of the benchmarks whose sizes are knobs (a knob given explicitly wins).
if (SMOKE) {
  const small = {
    JSHIP_BENCH_TAPE_MIB: '16', JSHIP_BENCH_RESTORE_MIB: '16', JSHIP_BENCH_SPARSE_MIB: '64', JSHIP_BENCH_HOT_RECORDS: '2000', JSHIP_BENCH_RSS_GIB: '1', JSHIP_BENCH_RSS_RECORDS: '2000',
    JSHIP_BENCH_PARITY_MIB: '16', JSHIP_BENCH_DIGEST_VOLUME_MIB: '64', JSHIP_BENCH_DIGEST_MIB: '16',
    JSHIP_BENCH_MOUNT_MIB: '64', JSHIP_BENCH_MOUNT_RECORDS: '2000', JSHIP_BENCH_S3_MIB: '16',
  };
  for (const [k, v] of Object.entries(small)) process.env[k] ??= v;
}

/** Peak RSS of a running process, in MiB (VmHWM from /proc; NaN once it is gone). */
export function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** MiB free to an unprivileged writer on the file system that holds `dir`. */
function freeMiB(dir) {
  const s = statfsSync(dir);
  return (s.bavail * s.bsize) / MiB;
}

const gib = (mib) => `${(mib / 1024).toFixed(1)} GiB`;

/**
 * The bytes written so far by the block device that holds `path`
 * (/sys/dev/block/MAJOR:MINOR/stat, its sectors written), as a function to
 * call before and after a run; null where no block device holds it (tmpfs,
 * overlay): what everything on that disk wrote, this bench's and others'.
 */
export function deviceWrites(path) {
  const dev = statSync(path).dev;
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  const file = `/sys/dev/block/${major}:${minor}/stat`;
  if (!existsSync(file)) return null;
  return () => Number(readFileSync(file, 'utf8').trim().split(/\s+/)[6]) * 512;
}

/**
 * Stops a benchmark before it writes anything when the file system holding
 * `dir` has less than `needMiB` free: a run that fills the disk dies in the
 * middle (in jship or in a peer, with ENOSPC), and its figures are lost.
 */
export function needSpace(name, dir, needMiB) {
  const free = freeMiB(dir);
  if (free < needMiB) {
    throw new Error(`bench ${name} needs about ${gib(needMiB)} free on the file system of ${dir}, and ${gib(free)} is free there: free some space, or point JSHIP_BENCH_DIR at a larger file system`);
  }
}

/** A scratch directory for one benchmark, after checking that its file system has about `needMiB` free. */
export function scratch(name, { needMiB = 0 } = {}) {
  const base = process.env.JSHIP_BENCH_DIR ?? tmpdir();
  needSpace(name, base, needMiB);
  const dir = mkdtempSync(join(base, `jship-bench-${name}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs a command, returns seconds it took; throws on failure. */
export function timeCommand(cmd, args, opts = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw new Error(`${cmd} cannot be run (${r.error.code ?? r.error.message}): scripts/install-tools.sh installs the peers (npm run bench runs it)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.signal ?? `exit ${r.status}`}): ${r.stderr}`);
  return secs;
}

/**
 * Runs one round's timed commands, the order alternating round by round. Each
 * removes its output as soon as it is timed, so that each finds the memory the
 * other freed: on a VM that hands freed memory back to its host, memory freed
 * long ago costs a fault a page (docs/BENCHMARKS.md, 2026-12-04 late).
 */
export function inTurn(round, ...commands) {
  for (const c of round % 2 ? [...commands].reverse() : commands) c();
}

/**
 * `runs` timed rounds of the commands `commandsOf(r)` gives, in turn, after
 * one round untimed (r = -1): on this VM whichever command writes first after
 * the set-up pays for page-cache memory the host has to back again — jship's
 * first full restore took 3.0 s against 0.85-0.94 s in the rounds after it,
 * and dd's, put first, 1.55 s against 0.84 (docs/BENCHMARKS.md, session 19).
 * Each command returns its seconds; returns each command's timed seconds.
 */
export function warmRounds(runs, commandsOf) {
  const secs = [];
  for (let r = -1; r < runs; r++) {
    const got = [];
    inTurn(r, ...commandsOf(r).map((c, i) => () => { got[i] = c(); }));
    if (r >= 0) got.forEach((s, i) => (secs[i] ??= []).push(s));
  }
  return secs;
}

export async function timeAsync(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** The median: the middle value, or the mean of the two middle ones (of two runs, their mean; not the slower). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function machine() {
  const c = cpus();
  return `${c.length} × ${c[0]?.model ?? 'cpu'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, node ${process.version}`;
}

export function mbps(bytes, secs) {
  return bytes / MiB / secs;
}

const JSHIP = new URL('../bin/jship', import.meta.url).pathname;

/** The node flags the launcher runs jship with (its shebang's, after `env -S node`), for a bench that runs jship's code in a process of its own. */
export function launcherFlags() {
  const first = readFileSync(JSHIP, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\S*env -S node((?: --\S+)*)\s*$/.exec(first);
  if (!m) throw new Error(`${JSHIP}: its first line is not "#!/usr/bin/env -S node FLAGS": ${first}`);
  return m[1].trim().split(/\s+/).filter((f) => f !== '');
}

/**
 * Runs the jship CLI as a user does (through its launcher) under GNU time:
 * returns seconds, peak RSS in MiB, and the --json output when asked for.
 */
export function runJship(args, { json = false } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', JSHIP, ...args, ...(json ? ['--json'] : [])], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`jship ${args.join(' ')} failed: ${r.stdout} ${r.stderr}`);
  const [rssKiB, user, sys] = (r.stderr.trim().split('\n').pop() ?? '').split(' ').map(Number);
  return { secs, rssMiB: rssKiB / 1024, cpuSecs: user + sys, out: json ? JSON.parse(r.stdout) : null };
}

/**
 * A group of one volume of `sizeMiB`, written 1 MiB at a time with `block(i)`; returns the group dir and the volume file.
 * The journal is `journalMiB` (default 64 MiB more than the data: nearly full, as a journal left to fill is).
 */
export async function filledGroup(dir, sizeMiB, block, { journalMiB = sizeMiB + 64 } = {}) {
  const { createGroup, openGroup } = await import('../dist/index.js');
  const g = join(dir, 'g');
  const vol = join(dir, 'vol.img');
  await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: vol, size: sizeMiB * MiB }] }], journalSize: journalMiB * MiB });
  const group = await openGroup(g, { checkpointIntervalMs: 0 });
  for (let i = 0; i < sizeMiB; i++) await group.write(0, i * MiB, block(i));
  await group.close();
  return { g, vol };
}
