import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const RUN = new URL('../bench/run.mjs', import.meta.url).pathname;

/** `node bench/run.mjs NAME` with JSHIP_BENCH_SMOKE=1: its exit code and what it printed. */
function bench(name: string, dir: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [RUN, name], { env: { ...process.env, JSHIP_BENCH_SMOKE: '1', JSHIP_BENCH_DIR: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/**
 * Benchmarks run once on tiny data: they still run end to end against their
 * peers and print every figure (never checked for speed). The capture ones had
 * broken unseen: fio's nbd engine refused the latency job's fdatasync, and the
 * sustained bench's exports failed through the owner; the rss bench wrote past
 * the end of any volume smaller than its 4 GiB default.
 */
describe('benchmarks still run (smoke, tiny data)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'jship-bench-smoke-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('nbd: each job against nbdkit and qemu-nbd, with a ratio, and the server\'s RSS', async () => {
    const r = await bench('nbd', dir);
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    for (const job of ['4 KiB randwrite qd32 ×2', '1 MiB seqwrite qd8', '4 KiB randwrite qd1 fsync=1']) {
      for (const peer of ['nbdkit file', 'qemu-nbd']) expect(r.out).toMatch(new RegExp(`${job}.*${peer}.*ratio \\d+\\.\\d\\d×`));
      expect(r.out).toContain(`${job}: server RSS`);
    }
    expect(r.out).toMatch(/flush p99 \d+\.\d+ ms/);
  }, 300_000);

  it('tapes, rss, parity, digest, append, bwlimit: each runs on tiny data and prints its ratios or peak RSS', async () => {
    for (const name of ['tapes', 'rss', 'parity', 'digest', 'append', 'bwlimit']) {
      const r = await bench(name, dir);
      expect(r.code, `${name}: ${r.out}\n${r.err}`).toBe(0);
      const figures = r.out.trim().split('\n').slice(1);
      expect(figures.length, `${name}: ${r.out}`).toBeGreaterThan(0);
      for (const line of figures) expect(line, name).toMatch(/ratio \d+\.\d\d×|peak RSS \d+ MiB/);
    }
  }, 300_000);

  it('restore: the full and the sparse restore, each against its peer', async () => {
    const r = await bench('restore', dir);
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    expect(r.out).toMatch(/full \d+ MiB from base .*dd bs=1M conv=fdatasync .*ratio \d+\.\d\d×/);
    expect(r.out).toMatch(/\d+ MiB, 10 % written .*qemu-img convert -n -O raw .*ratio \d+\.\d\d×/);
  }, 300_000);

  it('mount and mountmap: time to first byte, random reads against nbdkit, a whole read against restore; the map of a large volume', async () => {
    const m = await bench('mount', dir);
    expect(m.code, `${m.out}\n${m.err}`).toBe(0);
    expect(m.out).toMatch(/ttfb, .* ready \d+\.\d\d s, first 4 KiB read \d+\.\d\d s after start, peak RSS \d+ MiB/);
    for (const c of ['4k randread qd32, cold', '4k randread qd32, warm', 'read whole volume once']) expect(m.out).toMatch(new RegExp(`${c} .*ratio \\d+\\.\\d\\d×`));
    const map = await bench('mountmap', dir);
    expect(map.code, `${map.out}\n${map.err}`).toBe(0);
    expect(map.out).toMatch(/map, .* \d+ extents, map \d+ MiB, RSS grew -?\d+ MiB \(limit 256 MiB\)/);
  }, 300_000);

  it('link: a pull against a TLS socket copy, and over a 50 ms round trip against four, with both ends\' RSS and the receivers\' CPU; the lag of a pulling secondary under fio', async () => {
    const r = await bench('link', dir);
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    const figures = /ratio \d+\.\d\d× +\(peak RSS: pull \d+ MiB, serve \d+ MiB; receiver CPU-s per GiB: jship \d+\.\d, peer \d+\.\d\)/.source;
    expect(r.out).toMatch(new RegExp(`link +\\d+ MiB pull +jship .*TLS copy .*${figures}`));
    expect(r.out).toMatch(new RegExp(`link +\\d+ MiB pull, 50 ms RTT .*4 TLS copies .*${figures}`));
    expect(r.out).toMatch(/lag, fio 20 MiB\/s 4k +lag median \d+ records \/ \d+\.\d\d s, max \d+ records/);
  }, 300_000);

  it('s3: upload and download against rclone on a radosgw of its own (memstore, its own ports), and the peak RSS of an export to s3://', async () => {
    const r = await bench('s3', dir);
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    expect(r.out).toMatch(/upload \d+ MiB tape .*rclone copy .*ratio \d+\.\d\d×/);
    expect(r.out).toMatch(/download \d+ MiB tape .*rclone copy .*ratio \d+\.\d\d×/);
    expect(r.out).toMatch(/export --to s3:\/\/ of a \d+ MiB tape +peak RSS \d+ MiB/);
  }, 300_000);

  it('a benchmark that needs more disk than there is stops before it writes anything, saying how much it needs and what to do', async () => {
    // 1 PiB of mixed data: the tapes bench would otherwise start writing its journal until the disk is full.
    const own = mkdtempSync(join(dir, 'full-'));
    const r = await bench('tapes', own, { JSHIP_BENCH_TAPE_MIB: String(2 ** 30) });
    expect(r.code, `${r.out}\n${r.err}`).toBe(1);
    expect(r.err).toMatch(/^tapes: not measured: bench tapes needs about [\d.]+ GiB free on the file system of \S+, and [\d.]+ GiB is free there: free some space, or point JSHIP_BENCH_DIR at a larger file system$/m);
    expect(readdirSync(own)).toEqual([]);
  }, 60_000);

  it('sustained: writes through serve while exports run, none refused, with its ratio to dd', async () => {
    const r = await bench('sustained', dir);
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    expect(r.out).toMatch(/sustained .* jship \d+\.\d MiB\/s \(([1-9]\d*) exports, .*fio errors 0, .*ratio \d+\.\d\d×/);
  }, 300_000);
});
