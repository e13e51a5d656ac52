import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, expect, onTestFinished } from 'vitest';
import { createGroup, type CreateGroupOptions } from '../src/journal/group-create.js';

/**
 * A temporary directory, made at the start of each test and removed after
 * it. Only named when the suite is collected: a suite whose tests are all
 * filtered out or skipped (which runs no hook) leaves nothing behind.
 * Called inside a test, it is made at once and removed when that test ends.
 */
export function tempDir(): string {
  const dir = join(tmpdir(), `jship-test-${randomBytes(8).toString('hex')}`);
  if (expect.getState().currentTestName !== undefined) {
    mkdirSync(dir, { recursive: true });
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }
  beforeEach(() => mkdirSync(dir, { recursive: true }));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const KiB = 1024;
export const MiB = 1024 * 1024;

/**
 * Creates a group in DIR/group with volumes given as name → size (files in
 * DIR). The files are new (zero-filled: the group has its base at seq 0)
 * unless `existingFiles`, which makes them first, as volumes that held data
 * before init (no base until one is exported).
 */
export async function makeGroup(dir: string, sizes: Record<string, number>, opts: Partial<CreateGroupOptions> & { existingFiles?: boolean } = {}): Promise<string> {
  const groupDir = join(dir, 'group');
  const { existingFiles, ...create } = opts;
  if (existingFiles) {
    mkdirSync(dir, { recursive: true });
    for (const [name, size] of Object.entries(sizes)) truncateSync(openAndClose(join(dir, `${name}.img`)), size);
  }
  await createGroup(groupDir, {
    volumes: Object.entries(sizes).map(([name, size]) => ({ name, extents: [{ path: join(dir, `${name}.img`), size }] })),
    journalSize: 4 * MiB,
    ...create,
  });
  return groupDir;
}

function openAndClose(path: string): string {
  closeSync(openSync(path, 'w'));
  return path;
}

export const BIN = fileURLToPath(new URL('../bin/jship', import.meta.url));

/** A built module's URL (dist/P), quoted for the body of `nodeModule`. */
export const distUrl = (p: string): string => JSON.stringify(new URL(`../dist/${p}`, import.meta.url).href);

/**
 * Runs `body` as an ES module in a node process of its own: what it printed
 * and how it ended. One kept alive by something it no longer uses is killed
 * after a generous bound (status null), far above the second or so these
 * take on a loaded machine.
 */
export function nodeModule(body: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', body], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** Runs the built CLI with --json; returns the exit code and the parsed JSON object. */
export function jshipJson(...args: string[]): { code: number; out: any; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout ? JSON.parse(r.stdout) : null, stderr: r.stderr };
}

/** Runs the built CLI with --json without waiting for it (several run at once); resolves with the exit code and the JSON. */
export function jshipAsync(...args: string[]): Promise<{ code: number | null; out: any }> {
  const p = spawn(process.execPath, [BIN, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, out: out ? JSON.parse(out) : null })));
}

/** A small file system of its own (tmpfs; the tests run as root, as .ci/run does). Fails loudly when it cannot mount. */
export function mountTmpfs(at: string, size: string, remount = false): void {
  mkdirSync(at, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `${remount ? 'remount,' : ''}size=${size}`, 'tmpfs', at], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount -t tmpfs failed (${r.stderr.trim()}): this test needs root, as .ci/run runs it`);
}

export function unmount(at: string): void {
  spawnSync('umount', ['-l', at]);
}

/** One scrape with curl (a real HTTP client), checked by promtool, parsed into name{labels} → value. */
export function scrapeMetrics(args: string[]): Map<string, number> {
  const r = spawnSync('curl', ['-sf', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`curl ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: r.stdout, encoding: 'utf8' });
  if (lint.error) throw new Error(`promtool is missing (${lint.error.message}): .ci/run installs Debian's prometheus`);
  expect(lint).toExit(0);
  const out = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

/** A long-running verb (`link pull`, `mount`, …) with --json: resolves once it printed its ready line; its events are collected. */
export async function jshipProc(...args: string[]): Promise<{ ready: any; events: any[]; stop: () => Promise<number | string>; kill: () => Promise<void>; exited: Promise<number | string> }> {
  const p = spawn(process.execPath, [BIN, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: any[] = [];
  let err = '';
  let killed = false;
  p.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  // The exit code, or the name of the signal that ended it; what it said on stderr is shown when it failed.
  const exited = new Promise<number | string>((r) => p.once('close', (code, signal) => {
    const status = code ?? signal ?? 'unknown';
    if (status !== 0 && !killed && err !== '') console.error(`jship ${args.slice(0, 2).join(' ')} (pid ${p.pid}) ended with ${status}; its stderr:\n${err.slice(-4000)}`);
    r(status);
  }));
  const ready = await new Promise<any>((resolve, reject) => {
    createInterface({ input: p.stdout }).on('line', (l) => {
      const e = JSON.parse(l);
      events.push(e);
      if (e.ready) resolve(e);
    });
    void exited.then((c) => reject(new Error(`jship ${args.slice(0, 2).join(' ')} exited ${c}: ${err}${events.map((e) => JSON.stringify(e)).join('\n')}`)));
  });
  return {
    ready, events, exited,
    stop: async () => { p.kill('SIGTERM'); return exited; },
    kill: async () => { killed = true; p.kill('SIGKILL'); await exited; },
  };
}

/**
 * Waits until the wall clock (a served group's too: same machine) is in a
 * later millisecond: a time given as an ISO string then parts what came
 * before it from what comes after. Not a fixed sleep: it waits for the clock.
 */
export async function nextMillisecond(): Promise<void> {
  const now = Date.now();
  while (Date.now() <= now) await new Promise((r) => setImmediate(r));
}

/**
 * A tape file's hash as the standard tool docs/FORMAT.md names for its
 * format computes it: `b3sum` from format 5, `sha256sum` before (both
 * print `HEX  NAME`). Bytes are written to a file of their own first.
 */
export function toolHash(file: string | Buffer, version = 5): string {
  let path = file;
  if (typeof path !== 'string') {
    path = join(tempDir(), 'bytes');
    writeFileSync(path, file);
  }
  const tool = version >= 5 ? 'b3sum' : 'sha256sum';
  const r = spawnSync(tool, [path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tool} failed (the tests need it: .ci/run installs it): ${r.stderr ?? String(r.error)}`);
  return r.stdout.split(' ')[0] as string;
}
