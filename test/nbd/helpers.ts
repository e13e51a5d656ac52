import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { applyToImages } from '../../src/core/replay.js';
import { RecordType } from '../../src/core/record.js';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { afterAll } from 'vitest';
import { BIN } from '../helpers.js';

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
  const group = await JournalGroup.open(groupDir, { checkpointIntervalMs: 0 });
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
  /** Everything the server logged so far. */
  log(): string;
  /** SIGTERM, then the exit code and the JSON line printed on stop. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; out: any }>;
  exited: Promise<number | null>;
}

/** Starts the built `jship serve GROUP_DIR … --json` and waits for its ready line. */
export async function serve(groupDir: string, ...args: string[]): Promise<Served> {
  const proc = spawn(process.execPath, [BIN, 'serve', groupDir, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  // Every line is one JSON event; log events may come before the ready line.
  let ready = JSON.parse(await nextLine());
  while (ready.event === 'log') ready = JSON.parse(await nextLine());
  if (!ready.ready) throw new Error(`jship serve did not start: ${JSON.stringify(ready)}\n${log}`);
  return {
    proc,
    ready,
    exited,
    log: () => log + queue.map((l) => JSON.parse(l)).filter((e) => e.event === 'log').map((e) => `${e.time} ${e.message}\n`).join(''),
    stop: async (signal = 'SIGTERM') => {
      proc.kill(signal);
      const code = await exited;
      const last = queue.map((l) => JSON.parse(l)).filter((e) => e.event === 'stopped').at(-1);
      return { code, out: last ?? null };
    },
  };
}
