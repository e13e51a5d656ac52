import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { stampAlive } from '../io/dir-lock.js';

/**
 * The names of a mount's scratch files (its read cache and its writable
 * layers, in REPLICA_DIR/scratch or --scratch DIR): `mount-PID-TOKEN.cache`
 * and `mount-PID-TOKEN-VOLUME.scratch`, removed when the mount stops, or
 * `keep-PID-TOKEN-VOLUME.scratch` with --keep-scratch, left for the
 * operator. The token (one per mount) keeps a mount from colliding with what
 * an earlier process of the same pid left, or with another mount of the
 * same process.
 */
export class ScratchNames {
  readonly #stem: string;
  readonly #keep: boolean;

  constructor(keep = false) {
    this.#stem = `${process.pid}-${randomBytes(4).toString('hex')}`;
    this.#keep = keep;
  }

  cache(): string {
    return `mount-${this.#stem}.cache`;
  }

  layer(volume: string): string {
    return `${this.#keep ? 'keep' : 'mount'}-${this.#stem}-${volume}.scratch`;
  }
}

const THROWAWAY = /^mount-(\d+)(?:-[0-9a-f]+)?(?:\.cache|-.+\.scratch)$/;

/**
 * Removes the throw-away scratch files of mounts whose process is gone
 * (killed, or the machine went down): they stayed forever, up to the cache's
 * size each (8 GiB by default), and a later mount given the same pid could
 * not make its own. Files of a live process stay, and so do kept ones.
 */
export async function removeDeadScratch(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    const pid = Number(THROWAWAY.exec(name)?.[1] ?? NaN);
    if (Number.isSafeInteger(pid) && pid > 0 && !stampAlive({ pid, host: hostname(), start: '' })) await fsp.rm(join(dir, name), { force: true });
  }
}
