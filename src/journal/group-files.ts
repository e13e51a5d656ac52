import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { JshipError } from '../core/errors.js';
import { checkGroupConfig, type GroupConfig } from '../core/group-config.js';
import { readJsonFile, writeFileAtomic } from '../io/files.js';
import { checkLineage, type Lineage } from '../core/epoch.js';

/** The files of a group directory. */
export function groupPaths(dir: string): { config: string; lock: string; markers: string; bitmap: string; ackKey: string; linkKey: string; journal: string; fenced: string; epochBitmap: string; demoted: string; outside: string } {
  return {
    fenced: join(dir, 'fenced.json'),
    outside: join(dir, 'outside.json'),
    epochBitmap: join(dir, 'epoch.bitmap'),
    demoted: join(dir, 'demoted.json'),
    config: join(dir, 'group.json'),
    lock: join(dir, 'lock'),
    markers: join(dir, 'markers.jsonl'),
    bitmap: join(dir, 'dirty.bitmap'),
    ackKey: join(dir, 'ack.key'),
    linkKey: join(dir, 'link.key'),
    journal: join(dir, 'journal.jv'),
  };
}

export async function readGroupConfig(dir: string): Promise<GroupConfig> {
  const path = groupPaths(dir).config;
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new JshipError('GROUP_NOT_FOUND', `${dir} is not a journal group (${code === 'ENOENT' ? 'no group.json' : (e as Error).message})`, {
      hint: 'create one with `jship init GROUP_DIR --volume NAME=PATH[:SIZE] --journal-size SIZE`, or check the directory',
    });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new JshipError('GROUP_BAD_CONFIG', `${path} is not valid JSON: ${(e as Error).message}`, {
      hint: 'group.json is written by `jship init`; restore it from a backup',
    });
  }
  return checkGroupConfig(v, path);
}

export async function writeGroupConfig(dir: string, config: GroupConfig): Promise<void> {
  await writeFileAtomic(groupPaths(dir).config, `${JSON.stringify(config, null, 2)}\n`);
}

export interface MarkerEntry {
  name: string;
  seq: string;
  timestamp: string;
}

/** Every restore-point name the group has used (names stay unique after their records are purged). */
export async function readMarkerLog(dir: string): Promise<MarkerEntry[]> {
  let text: string;
  try {
    text = await fsp.readFile(groupPaths(dir).markers, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: MarkerEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as Partial<MarkerEntry>;
      if (typeof v.name === 'string') out.push({ name: v.name, seq: String(v.seq ?? ''), timestamp: String(v.timestamp ?? '') });
    } catch {
      // A half-written last line (crash while appending): the journal scan at open restores it.
    }
  }
  return out;
}

export async function appendMarkerLog(dir: string, entry: MarkerEntry): Promise<void> {
  await fsp.appendFile(groupPaths(dir).markers, `${JSON.stringify(entry)}\n`);
}

/**
 * fenced.json: this group learned that a newer epoch of it exists (another
 * site was promoted): it takes no writes. Written by the owner that learned
 * it; only an operator who knows better removes it (docs/OPERATIONS.md).
 */
export interface Fence {
  /** The newer lineage that was seen (core/epoch.ts). */
  epochs: Lineage;
  /** Who told: a secondary's name and address, or a tape. */
  from: string;
  learnedAt: string;
}

export async function readFence(dir: string): Promise<Fence | null> {
  const path = groupPaths(dir).fenced;
  return readJsonFile<Fence | null>(path, () => null, (x) => {
    const v = x as Fence;
    if (typeof v !== 'object' || v === null || typeof v.from !== 'string' || typeof v.learnedAt !== 'string') throw new Error('unexpected fields');
    checkLineage(v.epochs, (why) => {
      throw new Error(`epochs ${why}`);
    });
    return v;
  }, (why) => new JshipError('FENCE_DAMAGED', `${path} is damaged: ${why}`, {
    hint: 'the group was fenced (a newer epoch exists elsewhere); it stays fenced: demote it (jship demote), or, if you are sure no other site was promoted, move the file away',
  }));
}

export async function writeFence(dir: string, f: Fence): Promise<void> {
  await writeFileAtomic(groupPaths(dir).fenced, `${JSON.stringify(f, null, 2)}\n`);
}

/**
 * outside.json: volume files the group found changed when it opened, since
 * its last clean close (their size or last write differs from what the
 * close recorded), or while it was open and wrote nothing to them
 * (Volume.changedOutside): changed outside jship, so the journal lacks the
 * change and the secondaries do not have it. Kept until a scan journals those
 * volumes' changes, or a full base reads them again.
 */
export interface OutsideChange {
  /** The volumes whose files changed. */
  volumes: string[];
  /** When the group first saw it. */
  noticedAt: string;
}

/** What to run for volumes changed outside jship (the changed-outside event, status and check say it). */
export function outsideAdvice(dir: string): string {
  return `run jship scan ${dir} with the volumes quiet (a volume's first scan only records hashes: export a full base after it)`;
}

export async function readOutside(dir: string): Promise<OutsideChange | null> {
  const path = groupPaths(dir).outside;
  return readJsonFile<OutsideChange | null>(path, () => null, (x) => {
    const v = x as OutsideChange;
    if (typeof v !== 'object' || v === null || !Array.isArray(v.volumes) || !v.volumes.every((n) => typeof n === 'string') || typeof v.noticedAt !== 'string') throw new Error('unexpected fields');
    return v;
  }, (why) => new JshipError('OUTSIDE_STATE_DAMAGED', `${path} is damaged: ${why}`, {
    hint: `it lists volumes changed outside jship: run jship scan ${dir} (or export a full base), then move the file away`,
  }));
}

/** Writes (or, with no volumes left, removes) outside.json. */
export async function writeOutside(dir: string, o: OutsideChange | null): Promise<void> {
  const path = groupPaths(dir).outside;
  if (!o || o.volumes.length === 0) await fsp.rm(path, { force: true });
  else await writeFileAtomic(path, `${JSON.stringify(o, null, 2)}\n`);
}
