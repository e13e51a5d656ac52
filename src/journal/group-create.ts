import { promises as fsp } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { JshipError, param } from '../core/errors.js';
import { systemWallClock } from '../core/clock.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_POLICY, type GroupConfig, type JournalFullPolicy } from '../core/group-config.js';
import type { Lineage } from '../core/epoch.js';
import type { VolumeSpec } from '../core/volume-spec.js';
import { exists, writeFileAtomic, makeDirs, whereIs } from '../io/files.js';
import { Volume } from '../volume/volume.js';
import { groupPaths, writeGroupConfig } from './group-files.js';
import { JournalVolume, readJournalSuperblock } from './journal-volume.js';

export interface CreateGroupOptions {
  volumes: VolumeSpec[];
  journalSize: number;
  /** Where the journal file goes; default GROUP_DIR/journal.jv. */
  journalPath?: string;
  /** What happens when the journal is full; default `block`. */
  journalFull?: JournalFullPolicy;
  blockTimeoutMs?: number;
  nearlyFullPercent?: number;
  /** Dirty-bitmap and base chunk size; default 1 MiB. */
  chunkSize?: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * A promoted group (`jship promote`): the group it continues (its id and
   * lineage, ending with the new epoch), the first sequence number and the
   * last timestamp of the new epoch's journal, the keys the old primary's
   * sites hold (hex lines; new ones are made when absent), and the zeroed
   * start the old group's tapes said. Its volumes must exist already.
   */
  continues?: {
    groupId: string;
    epochs: Lineage;
    firstSeq: bigint;
    lastTimestamp: bigint;
    ackKey?: string;
    linkKey?: string;
    zeroedTs?: string;
  };
}

/**
 * Creates a journal group in `dir` (which must not exist or be empty): opens
 * or creates its volumes, creates and preallocates the journal, writes the
 * HMAC key for acknowledgements and group.json. On failure, removes what it
 * created and leaves existing files alone.
 */
export async function createGroup(dir: string, opts: CreateGroupOptions): Promise<GroupConfig> {
  dir = resolve(dir);
  await checkGroupCreatable(dir);
  const paths = groupPaths(dir);
  const journalPath = resolve(opts.journalPath ?? paths.journal);
  const seen = new Map<string, string>();
  for (const v of opts.volumes) {
    if (seen.has(v.name)) throw new JshipError('BAD_VOLUME_SPEC', `volume name "${v.name}" is given twice`, { hint: 'each --volume needs its own name' });
    seen.set(v.name, v.name);
  }
  // Compared by what names the file (device and inode, or the real path of one not made yet): through a
  // symbolic or hard link, one file was let in as two volumes, each writing over the other's bytes.
  const journal = await whereIs(journalPath);
  const named = new Map<string, string>();
  const allPaths = opts.volumes.flatMap((v) => v.extents.map((e) => resolve(e.path)));
  for (const p of allPaths) {
    const { id } = await whereIs(p);
    if (id === journal.id) throw new JshipError('BAD_VOLUME_SPEC', `${p} is named both as a volume and as the journal${p === journalPath ? '' : ` (${journalPath})`}`, { hint: 'the journal needs a file of its own' });
    const other = named.get(id);
    if (other !== undefined) throw new JshipError('BAD_VOLUME_SPEC', `${p} is named twice among the volumes${other === p ? '' : ` (as ${other} too)`}`, { hint: 'each file or device can belong to one volume only' });
    named.set(id, p);
    // Another group's journal as a volume: its writes would land in that journal's records.
    const theirs = await readJournalSuperblock(p).then((sb) => sb.groupId, () => undefined);
    if (theirs !== undefined) {
      throw new JshipError('BAD_VOLUME_SPEC', `${p} is the journal of jship group ${theirs}`, { hint: 'a volume is the data disk or image itself; a journal is never one' });
    }
  }
  if (opts.volumes.length === 0) throw new JshipError('USAGE', 'a group needs at least one volume', { hint: `add ${param('volumes')} NAME=PATH[:SIZE]` });
  const created: string[] = [];
  const createdDir = !(await exists(dir));
  try {
    await makeDirs(dir);
    const volumes: GroupConfig['volumes'] = [];
    for (const spec of opts.volumes) {
      const missing = await Promise.all(spec.extents.map(async (e) => !(await exists(e.path))));
      const vol = await Volume.open({ name: spec.name, extents: spec.extents.map((e) => ({ ...e, path: resolve(e.path) })) }, { create: true });
      spec.extents.forEach((e, i) => {
        if (missing[i]) created.push(resolve(e.path));
      });
      await vol.sync();
      volumes.push({ name: vol.name, extents: vol.extents.map((e) => ({ path: e.path, size: e.size })) });
      await vol.close();
    }
    const from = opts.continues;
    const groupId = from?.groupId ?? randomUUID();
    await JournalVolume.create(journalPath, opts.journalSize, groupId, opts.onProgress, from ? { seq: from.firstSeq, lastTimestamp: from.lastTimestamp } : undefined);
    created.push(journalPath);
    await writeFileAtomic(paths.ackKey, from?.ackKey ?? `${randomBytes(32).toString('hex')}\n`, 0o600);
    await writeFileAtomic(paths.linkKey, from?.linkKey ?? `${randomBytes(32).toString('hex')}\n`, 0o600);
    const config: GroupConfig = {
      format: 1,
      groupId,
      createdAt: new Date().toISOString(),
      volumes,
      journal: { path: journalPath, size: opts.journalSize },
      policy: {
        journalFull: opts.journalFull ?? DEFAULT_POLICY.journalFull,
        blockTimeoutMs: opts.blockTimeoutMs ?? DEFAULT_POLICY.blockTimeoutMs,
        nearlyFullPercent: opts.nearlyFullPercent ?? DEFAULT_POLICY.nearlyFullPercent,
      },
      chunkSize: opts.chunkSize ?? DEFAULT_CHUNK_SIZE,
      // Every volume file made here, zero-filled: the state before the first record is known.
      ...(!from && allPaths.every((p) => created.includes(p)) ? { zeroedTs: systemWallClock()().toString() } : {}),
      ...(from?.zeroedTs !== undefined ? { zeroedTs: from.zeroedTs } : {}),
      ...(from ? { epochs: from.epochs } : {}),
    };
    await writeGroupConfig(dir, config);
    return config;
  } catch (e) {
    for (const p of created) await fsp.rm(p, { force: true });
    await fsp.rm(paths.ackKey, { force: true });
    await fsp.rm(paths.linkKey, { force: true });
    if (createdDir) await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Refuses a directory a new group may not be created in: anything but a missing or empty one. */
export async function checkGroupCreatable(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new JshipError('GROUP_EXISTS', `${dir} is a file, not a directory`, { hint: 'name a new directory for the group' });
    throw e;
  }
  if (entries.length > 0) {
    throw new JshipError('GROUP_EXISTS', `${dir} is not empty${entries.includes('group.json') ? ': it holds a group already' : ''}`, {
      hint: 'name a new or empty directory; nothing was changed',
    });
  }
}
