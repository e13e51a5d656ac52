import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { makeDirs, writeFileAtomic } from '../io/files.js';
import { processStamp, stampAlive, type ProcessStamp } from '../io/dir-lock.js';

/**
 * mounts/PIN.json: a running `jship mount` (or drill) names the tapes it
 * reads, so that `expire` keeps them while it runs. Written under the
 * replica's lock before the mount lets go of it; a pin whose process is gone
 * (killed) no longer holds anything and is removed by the next reader.
 */
export interface MountPin extends ProcessStamp {
  since: string;
  point: string;
  seq: string;
  /** Serials of the tapes the mounted point reads. */
  tapes: number[];
}

const pinsDir = (replicaDir: string): string => join(replicaDir, 'mounts');

/** Writes this process's pin; returns its path (to remove it when the mount stops). */
export async function writePin(replicaDir: string, what: { point: string; seq: bigint; tapes: number[] }): Promise<string> {
  await makeDirs(pinsDir(replicaDir));
  const pin: MountPin = { ...processStamp(), since: new Date().toISOString(), point: what.point, seq: what.seq.toString(), tapes: [...what.tapes].sort((a, b) => a - b) };
  const path = join(pinsDir(replicaDir), `${process.pid}-${randomBytes(4).toString('hex')}.json`);
  await writeFileAtomic(path, `${JSON.stringify(pin)}\n`);
  return path;
}

/** The pins of running mounts; those of processes that are gone are removed, unreadable ones ignored. */
export async function livePins(replicaDir: string): Promise<MountPin[]> {
  const names = await fsp.readdir(pinsDir(replicaDir)).catch(() => [] as string[]);
  const out: MountPin[] = [];
  for (const n of names.filter((x) => x.endsWith('.json'))) {
    const path = join(pinsDir(replicaDir), n);
    let pin: MountPin;
    try {
      pin = JSON.parse(await fsp.readFile(path, 'utf8')) as MountPin;
      if (typeof pin.pid !== 'number' || typeof pin.host !== 'string' || !Array.isArray(pin.tapes)) throw new Error('malformed');
    } catch {
      continue;
    }
    if (stampAlive(pin)) out.push(pin);
    else await fsp.rm(path, { force: true });
  }
  return out;
}
