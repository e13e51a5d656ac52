import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { generationOf, promoted as nextLineage, type Lineage } from '../core/epoch.js';
import { JshipError } from '../core/errors.js';
import { checkGroupCreatable, createGroup } from '../journal/group-create.js';
import { JournalGroup } from '../journal/journal-group.js';
import { readGroupConfig } from '../journal/group-files.js';
import type { KeyRing } from '../tape/crypto.js';
import type { MarkerPayload } from '../core/marker.js';
import { ZEROED_TS } from './catalog.js';
import { Replica, type ReplicaWait } from './replica.js';
import { svolPath } from './svol-files.js';
import type { PointSpec } from './restore-plan.js';
import { run as restoreIn } from './restore.js';

export interface PromoteOptions {
  /** The new group's directory: missing or empty. */
  to: string;
  point: PointSpec;
  journalSize: number;
  /** Chunk of base reads and of the bitmaps (the epoch's written chunks: what a demoted old primary gets); default 1 MiB. */
  chunkSize?: number;
  /** Promote although the old primary was heard from within `quietMs`. */
  force?: boolean;
  /** How long the old primary must have been silent (default 5 minutes). */
  quietMs?: number;
  /** The group's link key and acknowledgement key, as the old primary's sites hold them (hex lines). */
  linkKey?: string;
  ackKey?: string;
  keys?: KeyRing;
  /** How long to wait for the replica while another command uses it (a nightly import). */
  wait?: ReplicaWait;
  now?: () => number;
  onProgress?: (done: number, total: number) => void;
}

export interface PromoteResult {
  replica: string;
  groupDir: string;
  groupId: string;
  epoch: { generation: number; startSeq: bigint };
  /** The point the volumes hold: the last record of the old epoch kept. */
  point: { seq: bigint; ts: bigint | null; name: string };
  forced: boolean;
  /** The old primary's last sign of life the replica knows (ISO time), null if none. */
  lastContact: string | null;
  volumes: Array<{ name: string; path: string; size: number }>;
  /** New keys were made (none given): the sites that follow the new primary need copies of them. */
  newKeys: Array<'link.key' | 'ack.key'>;
  /** An earlier promotion to the same directory was killed before the replica recorded it: this one finished it. */
  resumed: boolean;
}

export const DEFAULT_QUIET_MS = 5 * 60_000;

/**
 * Takeover (§0161-0166): the replica's SVOLs are restored to a consistent
 * point and become the PVOLs of a new epoch of the same group in `to`,
 * whose journal continues the sequence after that point. The replica keeps
 * its tapes (the group's history) and refuses restores into the SVOLs from
 * then on. Refused: a point that cannot be restored (gap, no base), a
 * directory that is not new, a replica already promoted, and — without
 * `force` — a replica that heard from its primary within `quietMs`.
 */
export async function promoteReplica(dir: string, opts: PromoteOptions): Promise<PromoteResult> {
  const replica = await Replica.open(dir, opts.wait ? { wait: opts.wait } : {});
  try {
    return await promoteIn(replica, opts);
  } finally {
    await replica.close();
  }
}

async function promoteIn(replica: Replica, opts: PromoteOptions): Promise<PromoteResult> {
  const to = resolve(opts.to);
  const cfg = replica.config;
  const resumed = await interruptedPromotion(replica, to);
  if (cfg.promoted) {
    throw new JshipError('REPLICA_PROMOTED', `${replica.dir} was promoted already (${cfg.promoted.at}): its SVOLs are the PVOLs of group ${cfg.promoted.groupDir}, epoch ${cfg.promoted.generation}`, {
      hint: 'a replica is promoted once; to follow the new primary, import its tapes into another replica',
    });
  }
  if (resumed) {
    await firstMarker(to, { kind: 'promoted', generation: generationOf(resumed.lineage), fromSeq: resumed.seq.toString(), forced: opts.force ?? false, host: hostname(), point: `seq ${resumed.seq}` });
    return finish(replica, to, resumed, opts);
  }
  await checkGroupCreatable(to);
  const lastContact = newestContact(replica);
  const quietMs = opts.quietMs ?? DEFAULT_QUIET_MS;
  const now = opts.now?.() ?? Date.now();
  const recent = lastContact !== null && now - Date.parse(lastContact) < quietMs;
  if (recent && !opts.force) {
    throw new JshipError('PROMOTE_REFUSED', `the replica heard from its primary ${Math.round((now - Date.parse(lastContact)) / 1000)} s ago (${lastContact}): the old primary may still be alive, and two primaries would write apart`, {
      hint: `make sure the old primary is down or cut off from its clients, then add --force (it is recorded in the new epoch's first marker); or wait until it has been silent ${Math.round(quietMs / 60_000)} minutes. Nothing was changed`,
    });
  }
  await replica.checkCatalogued();
  // The SVOLs to the point: the planner refuses a point that is not consistent (a gap, no complete base).
  const restored = await restoreIn(replica, { point: opts.point, ...(opts.keys ? { keys: opts.keys } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
  const seq = restored.plan.seq;
  const lineage = nextLineage(replica.catalog.lineage(), seq + 1n);
  const volumes = cfg.volumes.map((v) => ({ name: v.name, path: svolPath(replica.dir, v.name), size: v.size }));
  for (const v of volumes) {
    const st = await fsp.stat(v.path).catch(() => undefined);
    if (!st || st.size !== v.size) throw new JshipError('PROMOTE_REFUSED', `SVOL ${v.path} is ${st ? `${st.size} bytes, not ${v.size}` : 'missing'} after the restore`, { hint: 'this is a bug in jship: nothing was promoted' });
  }
  const zeroedTs = replica.catalog.getMeta(ZEROED_TS);
  await createGroup(to, {
    volumes: volumes.map((v) => ({ name: v.name, extents: [{ path: v.path, size: v.size }] })),
    journalSize: opts.journalSize,
    ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
    continues: {
      groupId: cfg.groupId, epochs: lineage, firstSeq: seq + 1n, lastTimestamp: restored.plan.ts,
      ...(opts.linkKey !== undefined ? { linkKey: opts.linkKey } : {}),
      ...(opts.ackKey !== undefined ? { ackKey: opts.ackKey } : {}),
      ...(zeroedTs !== undefined ? { zeroedTs } : {}),
    },
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  await firstMarker(to, { kind: 'promoted', generation: generationOf(lineage), fromSeq: seq.toString(), forced: recent, host: hostname(), point: restored.plan.point });
  const r = await finish(replica, to, { lineage, seq }, opts);
  return {
    ...r, point: { seq, ts: restored.plan.ts, name: restored.plan.point }, forced: recent, lastContact, resumed: false,
    newKeys: [...(opts.linkKey === undefined ? ['link.key' as const] : []), ...(opts.ackKey === undefined ? ['ack.key' as const] : [])],
  };
}

/** The new epoch's first record says where it came from (the timeline shows it at every site that follows). */
async function firstMarker(to: string, m: Extract<MarkerPayload, { kind: 'promoted' }>): Promise<void> {
  const group = await JournalGroup.open(to, { checkpointIntervalMs: 0 });
  try {
    if (group.journal.writtenSeq !== BigInt(group.epochs[group.epochs.length - 1]?.startSeq ?? '1')) return;
    await group.appendMarker(m);
    await group.flush();
  } finally {
    await group.close();
  }
}

/** Records the promotion in the replica (after the group exists): its SVOLs are the group's now. */
async function finish(replica: Replica, to: string, p: { lineage: Lineage; seq: bigint }, opts: PromoteOptions): Promise<PromoteResult> {
  const generation = generationOf(p.lineage);
  const startSeq = p.seq + 1n;
  replica.catalog.setLineage(p.lineage);
  replica.config.promoted = { groupDir: to, generation, startSeq: startSeq.toString(), at: new Date().toISOString() };
  await replica.saveConfig();
  const group = await readGroupConfig(to);
  return {
    replica: replica.dir, groupDir: to, groupId: group.groupId, epoch: { generation, startSeq },
    point: { seq: p.seq, ts: null, name: `seq ${p.seq}` }, forced: opts.force ?? false, lastContact: newestContact(replica),
    volumes: group.volumes.map((v) => ({ name: v.name, path: v.extents[0]?.path ?? '', size: v.extents.reduce((n, e) => n + e.size, 0) })),
    newKeys: [], resumed: true,
  };
}

/**
 * A promotion to `to` killed after it created the group and before the
 * replica recorded it: the group there continues this replica (same id, its
 * lineage one promotion on, its volumes the SVOLs).
 */
async function interruptedPromotion(replica: Replica, to: string): Promise<{ lineage: Lineage; seq: bigint } | null> {
  if (replica.config.promoted) return null;
  const g = await readGroupConfig(to).catch(() => undefined);
  if (!g || g.groupId !== replica.config.groupId || !g.epochs || g.epochs.length !== replica.catalog.lineage().length + 1) return null;
  if (!g.volumes.every((v) => v.extents.length === 1 && v.extents[0]?.path === svolPath(replica.dir, v.name))) return null;
  const last = g.epochs[g.epochs.length - 1];
  return last ? { lineage: g.epochs, seq: BigInt(last.startSeq) - 1n } : null;
}

/** When the replica last heard from its primary: the newest tape it stored. */
function newestContact(replica: Replica): string | null {
  return replica.catalog.tapes().reduce<string | null>((m, t) => (m === null || t.importedAt > m ? t.importedAt : m), null);
}
