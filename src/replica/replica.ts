import { promises as fsp } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { JshipError, param } from '../core/errors.js';
import { syncDir, writeFileAtomic, makeDirs } from '../io/files.js';
import { DirLock } from '../io/dir-lock.js';
import { Catalog } from './catalog.js';

/** replica.json: the group a replica belongs to, adopted from the first tape imported. */
export interface ReplicaConfig {
  format: 1;
  groupId: string;
  /** Sizes grow with the group's volumes (never shrink). */
  volumes: Array<{ name: string; size: number }>;
  createdAt: string;
  /** The name this replica has at its primary as a direct-link secondary (set by the first link tape). */
  linkName?: string;
  /**
   * Set by `jship promote`: the SVOLs became the PVOLs of the group in
   * `groupDir`, primary of epoch `generation` from `startSeq`. Restores into
   * the SVOLs are refused from then on (other targets still work).
   */
  promoted?: { groupDir: string; generation: number; startSeq: string; at: string };
}

/** How long a command waits for a replica another command uses (default: not at all), told once when it starts waiting. */
export interface ReplicaWait {
  ms: number;
  onWait?: (held: JshipError) => void;
}

/** The directories a replica keeps in its own: tapes, SVOLs, mount pins, drill logs, a mount's default scratch. */
export const REPLICA_DIRS: readonly string[] = ['tapes', 'svol', 'mounts', 'drills', 'scratch'];

/**
 * The secondary site's store: the verified tapes themselves (tapes/), their
 * catalogue (catalog.db) and the group they belong to (replica.json). One
 * process owns it at a time (lock), as for a group.
 */
export class Replica {
  readonly dir: string;
  readonly config: ReplicaConfig;
  readonly catalog: Catalog;
  /** None for a view (`Replica.view`): it reads, holding nothing. */
  readonly #lock: DirLock | undefined;

  private constructor(dir: string, config: ReplicaConfig, catalog: Catalog, lock: DirLock | undefined) {
    this.dir = dir;
    this.config = config;
    this.catalog = catalog;
    this.#lock = lock;
  }

  /** Writes replica.json again (after the volumes grew). */
  async saveConfig(): Promise<void> {
    await writeFileAtomic(join(this.dir, 'replica.json'), `${JSON.stringify(this.config, null, 2)}\n`);
  }

  get tapesDir(): string {
    return join(this.dir, 'tapes');
  }

  /**
   * Whether `path` (symbolic links resolved) is one of the replica's own
   * files: at the top of its directory (catalogue, config, state, lock) or
   * in a directory it keeps there (REPLICA_DIRS). Directories of the
   * operator's own beside them are not.
   */
  static owns(realDir: string, path: string): boolean {
    const rel = relative(realDir, path);
    if (rel === '') return true;
    if (rel.startsWith('..') || isAbsolute(rel)) return false;
    const parts = rel.split(sep);
    return parts.length === 1 || REPLICA_DIRS.includes(parts[0] as string);
  }

  tapePath(file: string): string {
    return join(this.tapesDir, file);
  }

  /**
   * Opens an existing replica. With `rebuild`, its catalogue is a new, empty
   * one beside the replica's own (REBUILD_CATALOG), which `adoptCatalog`
   * puts in place once whole: until then every reader, and the replica after
   * a rebuild that was killed, has the catalogue from before.
   */
  static async open(dir: string, opts: { rebuild?: boolean; yields?: boolean; wait?: ReplicaWait } = {}): Promise<Replica> {
    dir = resolve(dir);
    return Replica.#lockAndOpen(dir, await existingConfig(dir), opts.rebuild ?? false, opts.yields ?? false, opts.wait);
  }

  /**
   * A replica to read only (`check`, `tapes`, `timeline`), without its lock:
   * its catalogue read-only, as committed so far. Monitoring asked every few
   * minutes failed (GROUP_LOCKED, exit 1: a false alarm) for as long as an
   * import ran. Nothing may be written through it.
   */
  static async view(dir: string): Promise<Replica> {
    dir = resolve(dir);
    const config = await existingConfig(dir);
    return new Replica(dir, config, new Catalog(join(dir, CATALOG), { readonly: true }), undefined);
  }

  /**
   * Opens the replica in `dir`, or creates it there from `init()` (called only
   * when the directory does not exist or is empty). Anything else is refused.
   */
  static async openOrCreate(dir: string, init: () => Promise<Omit<ReplicaConfig, 'format' | 'createdAt'> | undefined>, opts: { yields?: boolean; wait?: ReplicaWait } = {}): Promise<{ replica: Replica; created: boolean } | undefined> {
    dir = resolve(dir);
    const yields = opts.yields ?? false;
    const existing = await readReplicaConfig(dir);
    if (existing) return { replica: await Replica.#lockAndOpen(dir, existing, false, yields, opts.wait), created: false };
    await Replica.checkCreatable(dir);
    const fields = await init();
    if (!fields) return undefined;
    await makeDirs(join(dir, 'tapes'));
    const config: ReplicaConfig = { format: 1, ...fields, createdAt: new Date().toISOString() };
    await writeFileAtomic(join(dir, 'replica.json'), `${JSON.stringify(config, null, 2)}\n`);
    return { replica: await Replica.#lockAndOpen(dir, config, false, yields), created: true };
  }

  /** Refuses a directory that a new replica may not be created in: anything but a missing or empty one. */
  static async checkCreatable(dir: string): Promise<void> {
    const entries = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [] as string[];
      if (e.code === 'ENOTDIR') throw new JshipError('REPLICA_NOT_EMPTY', `${dir} is a file, not a directory`, { hint: 'name a new or empty directory for the replica' });
      throw e;
    });
    // What a creation killed before replica.json was in place leaves: an empty tapes/ and replica.json's
    // temporary file. Such a directory is still new: the temporary file goes, the creation starts over.
    const temp = (n: string): boolean => /^\.replica\.json\.[0-9a-f]{12}\.tmp$/.test(n);
    const emptyTapes = async (n: string): Promise<boolean> => n === 'tapes' && (await fsp.readdir(join(dir, n)).catch(() => ['?'])).length === 0;
    const leftovers = await Promise.all(entries.map(async (n) => temp(n) || (await emptyTapes(n))));
    if (leftovers.every(Boolean)) {
      for (const n of entries.filter(temp)) await fsp.rm(join(dir, n), { force: true });
      return;
    }
    if (entries.length > 0) {
      throw new JshipError('REPLICA_NOT_EMPTY', `${dir} is neither a replica nor empty`, {
        hint: 'import into an existing replica, or into a new or empty directory; nothing was changed',
      });
    }
  }

  static async #lockAndOpen(dir: string, config: ReplicaConfig, rebuild = false, yields = false, wait?: ReplicaWait): Promise<Replica> {
    const lock = await DirLock.acquire(join(dir, 'lock'), `replica ${dir}`, {
      yields,
      busyHint: `one jship command uses a replica at a time: run this again once that process has ended, or let it wait (${param('wait')} DURATION)`,
      ...(wait ? { busyWaitMs: wait.ms, ...(wait.onWait ? { onBusy: wait.onWait } : {}) } : {}),
    });
    try {
      await makeDirs(join(dir, 'tapes'));
      // What a rebuild killed before it ended left is started over.
      if (rebuild) for (const f of sqliteFiles(REBUILD_CATALOG)) await fsp.rm(join(dir, f), { force: true });
      return new Replica(dir, config, new Catalog(join(dir, rebuild ? REBUILD_CATALOG : CATALOG)), lock);
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /**
   * Refuses to answer from a catalogue that lost its tapes: it lists none
   * while tapes/ holds tape files (deleted, or replaced by an empty one).
   */
  async checkCatalogued(): Promise<void> {
    if (this.catalog.tapes().length > 0) return;
    const files = (await fsp.readdir(this.tapesDir).catch(() => [] as string[])).filter((n) => n.endsWith('.tar.zst') && !n.startsWith('.'));
    if (files.length === 0) return;
    throw new JshipError('REPLICA_BAD', `the catalogue of ${this.dir} lists no tapes, but tapes/ holds ${files.length} tape file${files.length > 1 ? 's' : ''}: the catalogue was lost or damaged`, {
      hint: `rebuild it from the stored tapes: jship catalog ${this.dir} --rebuild`,
    });
  }

  /**
   * Puts a rebuild's catalogue in place of the replica's (and closes it):
   * written whole into its own file, made durable, the old catalogue's
   * write-ahead log removed (SQLite would replay it into the new file), then
   * renamed over the old one. A view opened before goes on reading the old.
   */
  async adoptCatalog(): Promise<void> {
    const from = join(this.dir, REBUILD_CATALOG);
    if (this.catalog.path !== from) throw new Error('adoptCatalog: not a rebuild');
    this.catalog.closeAsOneFile();
    const h = await fsp.open(from, 'r+');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
    for (const f of sqliteFiles(CATALOG).slice(1)) await fsp.rm(join(this.dir, f), { force: true });
    await fsp.rename(from, join(this.dir, CATALOG));
    await syncDir(this.dir);
  }

  /** Whether another process waits for this replica (an owner that yields then closes it). */
  async wanted(): Promise<boolean> {
    return (await this.#lock?.wanted()) ?? false;
  }

  /** Closes the catalogue and lets go of the lock, even when the catalogue fails to close. */
  async close(): Promise<void> {
    try {
      this.catalog.close();
    } finally {
      await this.#lock?.release();
    }
  }
}

const CATALOG = 'catalog.db';
/** Where `jship catalog --rebuild` builds the new catalogue until it is whole. */
const REBUILD_CATALOG = 'catalog.db.rebuild';

/** A SQLite database's files: the database, its write-ahead log, its shared-memory index. */
function sqliteFiles(name: string): string[] {
  return [name, `${name}-wal`, `${name}-shm`];
}

async function existingConfig(dir: string): Promise<ReplicaConfig> {
  const config = await readReplicaConfig(dir);
  if (!config) {
    throw new JshipError('REPLICA_NOT_FOUND', `${dir} is not a jship replica (no replica.json)`, {
      hint: 'a replica is created by the first `jship import REPLICA_DIR TAPE` into a new or empty directory',
    });
  }
  return config;
}

async function readReplicaConfig(dir: string): Promise<ReplicaConfig | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(join(dir, 'replica.json'), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
  try {
    const v = JSON.parse(text) as ReplicaConfig;
    if (v.format !== 1 || typeof v.groupId !== 'string' || !Array.isArray(v.volumes)) throw new Error('malformed');
    return v;
  } catch (e) {
    throw new JshipError('REPLICA_BAD', `${join(dir, 'replica.json')} is damaged (${(e as Error).message})`, {
      hint: 'restore it from a backup, or create a new replica and import the tapes again',
    });
  }
}
