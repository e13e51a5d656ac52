import { eventLine } from '../../src/core/events.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { expect } from 'vitest';
import { ByteQueue } from '../../src/core/byte-queue.js';
import { FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, Opt, Rep, encodeOptionHeader, encodeRequest } from '../../src/nbd/protocol.js';
import { applyToImages } from '../../src/core/replay.js';
import { RecordType } from '../../src/core/record.js';
import { afterAll } from 'vitest';
import { BIN, jshipJson } from '../helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

/** Servers a test started and did not stop (it failed or timed out) are killed when its file ends. */
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Replays every record of the (stopped) group's journal onto zeroed images
 * and says whether that reproduces each PVOL byte for byte: the journal
 * holds every write the clients made. Returns the records' headers.
 */
export async function journalReproducesVolumes(groupDir: string): Promise<{ ok: boolean; headers: Array<{ type: RecordType; volume: number; offset: number; length: number }> }> {
  const group = await openSiteGroup(groupDir, { checkpointIntervalMs: 0 });
  try {
    const images = group.volumes.map((v) => new Uint8Array(v.size));
    const headers = [];
    for await (const r of group.records()) {
      applyToImages(images, r.header, r.data);
      if (r.header.type !== RecordType.Marker) headers.push({ type: r.header.type, volume: r.header.volume, offset: r.header.offset, length: r.header.length });
    }
    const ok = group.volumes.every((v, i) => Buffer.from(images[i] as Uint8Array).equals(readFileSync(v.extents[0]!.path)));
    return { ok, headers };
  } finally {
    await group.close();
  }
}

/** Runs a real client; fails the test with its output when it exits non-zero. Never skips. */
export function client(cmd: string, ...args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}): .ci/run installs qemu-utils libnbd-bin nbdkit fio`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export interface Served {
  proc: ChildProcess;
  ready: { listening: string; exports: Array<{ name: string; size: number; uri: string }>; pid: number };
  /** Every event the server printed so far, one readable line each (`TIME EVENT key=value …`). */
  log(): string;
  /** SIGTERM, then the exit code and the JSON line printed on stop. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; out: any }>;
  exited: Promise<number | null>;
}

/** Starts the built `jship serve GROUP_DIR … --json` and waits for its ready line. */
export async function serve(groupDir: string, ...args: string[]): Promise<Served> {
  return serveUnder([], groupDir, ...args);
}

/** `serve`, run under another program (e.g. strace -f -o FILE). */
export async function serveUnder(wrap: string[], groupDir: string, ...args: string[]): Promise<Served> {
  const cmd = [...wrap, process.execPath, BIN, 'serve', groupDir, ...args, '--json'];
  const proc = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  proc.once('close', () => running.delete(proc));
  let log = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { log += d; });
  const lines = createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  lines.on('line', (l) => {
    queue.push(l);
    wake?.();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  const nextLine = async (): Promise<string> => {
    while (queue.length === 0) {
      const done = await Promise.race([new Promise<'line'>((r) => { wake = () => r('line'); }), exited.then(() => 'exit' as const)]);
      if (done === 'exit' && queue.length === 0) throw new Error(`jship serve exited early:\n${log}`);
    }
    return queue.shift() as string;
  };
  // Every line is one JSON event; events may come before the ready line.
  let ready = JSON.parse(await nextLine());
  while (!ready.ready && ready.event !== 'error' && !ready.error) ready = JSON.parse(await nextLine());
  if (!ready.ready) throw new Error(`jship serve did not start: ${JSON.stringify(ready)}\n${log}`);
  return {
    proc,
    ready,
    exited,
    log: () => log + queue.map((l) => JSON.parse(l)).filter((e) => !e.ready && !e.stopped).map(({ at, ...e }) => `${at} ${eventLine(e)}\n`).join(''),
    stop: async (signal = 'SIGTERM') => {
      // The server itself, also when it runs under another program (strace).
      process.kill(ready.pid, signal);
      const code = await exited;
      const last = queue.map((l) => JSON.parse(l)).filter((e) => e.event === 'stopped').at(-1);
      return { code, out: last ?? null };
    },
  };
}

/** Raw bytes over the socket: the misbehaving client no real program is. */
export class Raw {
  readonly socket: Socket;
  readonly #in = new ByteQueue();
  #wake: (() => void) | undefined;
  closed = false;

  constructor(path: string) {
    this.socket = connect(path);
    this.socket.on('data', (d: Buffer) => {
      this.#in.push(d);
      this.#wake?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake?.();
    });
    this.socket.on('error', () => undefined);
  }

  send(...bufs: Buffer[]): void {
    for (const b of bufs) this.socket.write(b);
  }

  async read(n: number): Promise<Buffer> {
    for (;;) {
      const b = this.#in.take(n);
      if (b) return Buffer.from(b);
      if (this.closed) throw new Error(`connection closed with ${this.#in.length} of ${n} bytes`);
      await new Promise<void>((r) => { this.#wake = r; });
    }
  }

  /** Resolves true when the server closes the connection (within 5 s). */
  async closedByServer(): Promise<boolean> {
    const until = Date.now() + 5000;
    while (!this.closed && Date.now() < until) await new Promise<void>((r) => { this.#wake = r; setTimeout(r, 100); });
    return this.closed;
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    expect(h.readBigUInt64BE(0)).toBe(0x3e889045565a9n);
    const data = await this.read(h.readUInt32BE(16));
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** Greeting, flags, then GO on `name`: ready for requests (simple replies). */
  async handshake(name = 'a'): Promise<void> {
    await this.read(18);
    this.send(u32(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    const n = Buffer.from(name);
    const data = Buffer.concat([u32(n.length), n, Buffer.from([0, 0])]);
    this.send(encodeOptionHeader(Opt.GO, data.length), data);
    for (;;) {
      const r = await this.optionReply();
      if (r.type === Rep.ACK) return;
      expect(r.type).toBe(Rep.INFO);
    }
  }

  async simpleReply(): Promise<{ error: number; handle: bigint }> {
    const b = await this.read(16);
    expect(b.readUInt32BE(0)).toBe(0x67446698);
    return { error: b.readUInt32BE(4), handle: b.readBigUInt64BE(8) };
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export const req = (type: number, handle: bigint, offset: number, length: number, flags = 0): Buffer =>
  encodeRequest({ flags, type, handle, offset: BigInt(offset), length });


/**
 * Waits until the served group has journaled at least `n` records in all
 * (status through its control socket): the load a test started is running.
 * Instead of a fixed sleep, which a loaded machine outlasts.
 */
export async function untilJournaled(g: string, n: number, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const st = jshipJson('status', g).out;
    if (Number(st?.sequence?.last ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error(`${g}: fewer than ${n} records journaled after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
