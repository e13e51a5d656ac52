import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { JshipError } from '../core/errors.js';
import { makeDirs, writeFileAtomic } from '../io/files.js';

/**
 * drills/TIME-PID.json: one file per drill, written once when it ends, so a
 * drill records itself without the replica's lock (it ran beside imports).
 * `seq`/`ts` are strings (64-bit); `ts` in nanoseconds since the epoch.
 */
export interface DrillRecord {
  format: 1;
  point: string;
  seq: string;
  ts: string;
  volumes: string[];
  command: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** The command's exit code (null when it was killed). */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  interrupted: boolean;
  ok: boolean;
  /** The end of what the command printed (at most 4 KiB). */
  output: string;
}

const drillsDir = (replicaDir: string): string => join(replicaDir, 'drills');

export async function recordDrill(replicaDir: string, d: DrillRecord): Promise<string> {
  await makeDirs(drillsDir(replicaDir));
  const stamp = d.finishedAt.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const path = join(drillsDir(replicaDir), `${stamp}-${process.pid}.json`);
  await writeFileAtomic(path, `${JSON.stringify(d, null, 2)}\n`);
  return path;
}

/** Every drill recorded in the replica, oldest first. A damaged record is refused with its name. */
export async function readDrills(replicaDir: string): Promise<DrillRecord[]> {
  const names = (await fsp.readdir(drillsDir(replicaDir)).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
  const out: DrillRecord[] = [];
  for (const n of names) {
    const path = join(drillsDir(replicaDir), n);
    try {
      const d = JSON.parse(await fsp.readFile(path, 'utf8')) as DrillRecord;
      if (d.format !== 1 || typeof d.ok !== 'boolean' || !/^\d+$/.test(d.seq) || !/^\d+$/.test(d.ts) || Number.isNaN(Date.parse(d.finishedAt))) throw new Error('malformed');
      out.push(d);
    } catch (e) {
      throw new JshipError('REPLICA_BAD', `the drill record ${path} is damaged (${(e as Error).message})`, { hint: 'remove that file (the drill it recorded is then forgotten) and run a new drill' });
    }
  }
  return out.sort((a, b) => Date.parse(a.finishedAt) - Date.parse(b.finishedAt));
}
