import { makeDirs, whereIs } from '../io/files.js';
import { volumeFileHolder } from '../io/volume-file-lock.js';
import { promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { RestoreProof, proofText, type PointProof } from './prove.js';
import { JshipError, isJshipError, param } from '../core/errors.js';
import type { KeyRing } from '../tape/crypto.js';
import { byChain, tapeRef, type Catalog, type SegmentRow, type TapeRef } from './catalog.js';
import { Replica, type ReplicaWait } from './replica.js';
import { readReplicaState, writeReplicaState, type ReplicaState } from './replica-state.js';
import { planAdopt, planRestore, type PointSpec } from './restore-plan.js';
import { Applier, READ_AHEAD } from './applier.js';
import { SegmentSource } from './segment-source.js';
import { FramePool } from '../tape/frame-pool.js';
import { commitFiles, openSvolTarget, openTarget, removeLeftover, type RestoreTarget } from './targets.js';
import { changedSvols, svolFile, svolPath, type SvolFile } from './svol-files.js';

export interface RestoreOptions {
  point: PointSpec;
  /** Volumes to restore (default: all). Only with targets: the SVOLs are always restored together. */
  volumes?: string[];
  /** Volume name → path; a directory means DIR/NAME.img. Without targets, the SVOLs. */
  targets?: Array<{ volume?: string; path: string }>;
  dryRun?: boolean;
  inconsistent?: boolean;
  /** Write each surviving extent once (default); false replays every record in order. */
  coalesce?: boolean;
  force?: boolean;
  /** File mode of restored image files (default 0600: they hold what the PVOLs hold). */
  mode?: number;
  keys?: KeyRing;
  onProgress?: (done: number, total: number) => void;
  /**
   * The SVOLs are an old primary's volumes, demoted (`jship demote`): bring
   * them to the completion of the replica's first resync base (planAdopt).
   * Only into the SVOLs, and only before they were ever restored.
   */
  adopt?: boolean | { requestId: string };
  /**
   * Taken by an owner that hands the replica over (the link receiver's
   * apply): a process that asks for the replica meanwhile waits for this
   * restore to end instead of being refused.
   */
  yields?: boolean;
  /** How long to wait for the replica while another command uses it. */
  wait?: ReplicaWait;
  /** Frame workers the caller started (and closes): started early, their start-up overlaps the replica's opening. */
  pool?: FramePool;
}

export interface RestoreResult {
  plan: {
    seq: bigint;
    ts: bigint;
    point: string;
    bases: Array<{ baseId: bigint; scope: string; segments: number }>;
    incrementalFrom: bigint | null;
    records: number;
    segments: number;
    tapes: TapeRef[];
    /**
     * The pull list: each tape file the plan reads from, with its segments
     * and their bytes on the tape (a coalesced restore may skip superseded
     * segments: these are at most what it reads). What to fetch from the
     * vault or the shelf before restoring or mounting the point.
     */
    pull: Array<TapeRef & { file: string; segments: number; bytes: number }>;
    inconsistent: boolean;
  };
  targets: Array<{ volume: string; path: string; kind: string }>;
  dryRun: boolean;
  coalesced: boolean;
  /** Segments whose data was read (decompressed); the rest was superseded. */
  segmentsRead: number;
  bytesWritten: number;
  /**
   * What was written compared with the primary's digest of the point (a
   * restore point or a base completion whose tape carried one); null when
   * the point has none (a time or seq between them, an older tape).
   */
  proof: PointProof | null;
  /**
   * Why the SVOLs were rebuilt from the base instead of brought forward from
   * the point they held: one of them was changed outside jship since.
   */
  svolsRebuilt?: string;
  /** The SVOLs were at this point already: nothing was read or written. */
  nothingToDo?: boolean;
  /** The same restore had been killed between its renames: this run finished them and wrote nothing. */
  finishedInterrupted?: boolean;
}

/**
 * Restores volumes to a point (DESIGN invariant 3): the base, then exactly the
 * records up to the point in sequence order — coalesced, so that each byte
 * range is written once, from the last record that wrote it, and segments
 * whose data is all superseded are never read. Into the SVOLs (in place,
 * forward only, the "restored" pointer persisted after the data is durable) or
 * into any files or devices.
 */
export async function restoreReplica(dir: string, opts: RestoreOptions): Promise<RestoreResult> {
  const replica = await Replica.open(dir, { ...(opts.yields ? { yields: true } : {}), ...(opts.wait ? { wait: opts.wait } : {}) });
  try {
    return await run(replica, opts);
  } finally {
    await replica.close();
  }
}

/** A restore in a replica the caller has open (and keeps open). */
export async function run(replica: Replica, opts: RestoreOptions): Promise<RestoreResult> {
  const pool = opts.pool ?? new FramePool();
  try {
    return await runWith(replica, opts, pool);
  } finally {
    if (!opts.pool) await pool.close();
  }
}

async function runWith(replica: Replica, opts: RestoreOptions, pool: FramePool): Promise<RestoreResult> {
  await replica.checkCatalogued();
  const cat = replica.catalog;
  const vols = replica.config.volumes;
  const toSvol = !opts.targets || opts.targets.length === 0;
  const promoted = replica.config.promoted;
  if (toSvol && promoted) {
    throw new JshipError('REPLICA_PROMOTED', `the SVOLs of ${replica.dir} are the PVOLs of group ${promoted.groupDir} since its promotion (epoch ${promoted.generation}, ${promoted.at}): they are not restored into any more`, {
      hint: 'restore into a file or device with --target; the group writes its volumes itself',
    });
  }
  if (toSvol && opts.volumes && opts.volumes.length > 0) {
    throw new JshipError('USAGE', `${param('volumes')} needs ${param('targets')}: the SVOLs are always restored together`, { hint: `restoring one SVOL alone would break the group's consistency; give ${param('targets')} PATH to restore one volume elsewhere` });
  }
  const selected = (opts.volumes && opts.volumes.length > 0 ? opts.volumes : vols.map((v) => v.name)).map((name) => {
    const i = vols.findIndex((v) => v.name === name);
    if (i < 0) throw new JshipError('USAGE', `the replica has no volume "${name}"`, { hint: `its volumes: ${vols.map((v) => v.name).join(', ')}` });
    return i;
  });
  const state = await readReplicaState(replica.dir);
  // A restore into several files killed between its renames: finish them first (all or nothing).
  const interrupted = state.renaming ?? null;
  if (interrupted && !opts.dryRun) {
    await commitFiles(interrupted.files);
    state.renaming = null;
    await writeReplicaState(replica.dir, state);
  }
  if (!opts.dryRun) await removeLeftovers(replica.dir, state);
  let svolSeq = BigInt(state.svol.restoredSeq);
  // SVOLs changed outside jship since their restore hold no point: they are rebuilt from the base, not brought forward.
  const changed = toSvol && svolSeq > 0n && !opts.adopt ? await changedSvols(replica.dir, vols.map((v) => v.name), state.svol) : null;
  if (changed) svolSeq = 0n;
  if (toSvol && opts.inconsistent) throw new JshipError('USAGE', `${param('inconsistent')} needs ${param('targets')}: an SVOL only ever holds consistent points`, { hint: 'restore the partial image into a file' });
  if (opts.adopt && (!toSvol || svolSeq !== 0n)) throw new JshipError('USAGE', 'adopting demoted volumes goes into SVOLs never restored before', { hint: 'this is what jship demote does once; afterwards restore as usual' });
  const plan = opts.adopt ? planAdopt(cat, typeof opts.adopt === 'object' ? opts.adopt.requestId : undefined) : planOr(changed, () => planRestore(cat, opts.point, toSvol ? { svolSeq } : { inconsistent: opts.inconsistent ?? false }));
  const inProgress = state.svol.inProgress;
  if (toSvol && inProgress && plan.seq < BigInt(inProgress.seq)) {
    throw new JshipError('RESTORE_REFUSED', `an interrupted restore of the SVOLs to seq ${inProgress.seq} left them between points; restore them to at least that point`, {
      hint: 'rerun the restore to the same (or a later) point; for an earlier point use --target',
    });
  }
  const targetPaths = toSvol ? selected.map((i) => ({ volume: vols[i]!.name, path: svolPath(replica.dir, vols[i]!.name) })) : await resolveTargets(opts.targets ?? [], selected.map((i) => vols[i]!.name));
  if (!toSvol) await checkTargets(targetPaths, replica.dir);
  const read = [...plan.updateSegments, ...plan.bases.flatMap((b) => b.segments)];
  const tapes = [...new Set(read.map((s) => s.serial))].sort(byChain);
  const result: RestoreResult = {
    plan: {
      seq: plan.seq, ts: plan.ts, point: plan.point,
      bases: plan.bases.map((b) => ({ baseId: b.baseId, scope: b.scope, segments: b.segments.length })),
      incrementalFrom: toSvol && svolSeq > 0n ? svolSeq : null,
      records: plan.records,
      segments: plan.updateSegments.length + plan.bases.reduce((n, b) => n + b.segments.length, 0),
      tapes: tapes.map(tapeRef), pull: pullList(cat, read), inconsistent: plan.inconsistent,
    },
    targets: targetPaths.map((t) => ({ ...t, kind: toSvol ? 'svol' : 'target' })),
    ...(changed ? { svolsRebuilt: changed } : {}),
    dryRun: opts.dryRun ?? false,
    coalesced: false,
    segmentsRead: 0,
    bytesWritten: 0,
    proof: null,
  };
  const source = new SegmentSource(replica, opts.keys, { cacheSize: READ_AHEAD + 2, pool });
  source.checkKeys(tapes);
  if (opts.dryRun) return result;
  // The same restore again, after it was killed between its renames: the renames above finished it.
  if (interrupted && !toSvol && BigInt(interrupted.seq) === plan.seq && sameFiles(interrupted.files.map((f) => f.path), targetPaths.map((t) => t.path))) {
    result.finishedInterrupted = true;
    return result;
  }
  if (toSvol && plan.seq === svolSeq && !inProgress) {
    result.nothingToDo = true;
    return result;
  }

  const targets: Array<RestoreTarget | undefined> = vols.map(() => undefined);
  let proving: RestoreProof | undefined;
  try {
    for (const [k, i] of selected.entries()) {
      const t = targetPaths[k]!;
      targets[i] = toSvol ? await openSvolTarget(t.volume, t.path, vols[i]!.size) : await openTarget(t.volume, t.path, vols[i]!.size, opts.force ?? false, opts.mode);
    }
    // Listed before any byte is written: a kill from here on leaves files the next restore removes.
    const tmps = targets.flatMap((t) => (t?.tmpPath ? [t.tmpPath] : []));
    if (tmps.length > 0) {
      state.writing = [...(state.writing ?? []), ...tmps];
      await writeReplicaState(replica.dir, state);
    }
    result.targets = targets.filter((t): t is RestoreTarget => !!t).map((t) => ({ volume: t.volume, path: t.path, kind: t.kind }));
    const now = new Date().toISOString();
    if (toSvol) {
      state.svol.inProgress = { seq: plan.seq.toString(), startedAt: now };
      await writeReplicaState(replica.dir, state);
    }
    const devices = targets.filter((t) => t?.kind === 'device') as RestoreTarget[];
    if (devices.length > 0) {
      for (const d of devices) state.devices[d.path] = { inProgress: { seq: plan.seq.toString(), startedAt: now }, restoredSeq: null };
      await writeReplicaState(replica.dir, state);
    }
    // The base at seq 0 of volumes created zero-filled has no records: a target that is not new starts as zeros.
    const zeroBase = plan.bases[0]?.scope === 'full' && plan.bases[0].segments.length === 0;
    if (zeroBase) for (const [i, t] of targets.entries()) if (t && !t.fresh) await t.clear(vols[i]!.size);
    const apply = new Applier(cat, plan, targets, vols.map((v) => v.size), source, opts.onProgress);
    const coalesce = opts.coalesce ?? true;
    result.coalesced = coalesce;
    // Before anything is put in place: what was written must be what the primary had at the point. The proof
    // reads each part back once nothing more is written there, the last of it while it is made durable (it
    // reads what the targets hold either way).
    const digest = plan.inconsistent ? undefined : cat.digest(plan.seq);
    proving = digest ? await RestoreProof.open(pool, digest, targets.map((t) => t && { name: t.volume, path: t.tmpPath ?? t.path, untouched: t.untouched ?? undefined })) : undefined;
    if (coalesce) await apply.coalesced(proving);
    else await apply.inOrder();
    const [proof] = await allOrFirstError([
      proving ? proving.result() : Promise.resolve(null),
      Promise.all(targets.map((t) => t?.finish())),
    ] as const);
    result.proof = proof;
    if (proof && !proof.equal) {
      if (toSvol) {
        // The SVOLs hold what no point held: rebuilt from the base at the next restore.
        state.svol = { restoredSeq: '0', restoredTs: null, inProgress: null };
        await writeReplicaState(replica.dir, state);
      }
      throw new JshipError('DIGEST_MISMATCH', `restore to ${plan.point}: ${proofText(proof)}${toSvol ? '; the SVOLs are marked as holding no point' : targets.some((t) => t?.kind === 'device') ? '; the device holds what no point held' : '; nothing was put in place'}`, {
        hint: 'the replica\'s tapes hold records that differ from what the primary had (a tape altered with its checksums recomputed, or a bug): import the tapes again from another copy, then restore; jship verify --deep REPLICA --marker M checks other points without writing',
        details: { volumes: proof.volumes.filter((v) => !v.equal).map((v) => v.name).join(',') },
      });
    }
    // Every file is complete and durable under its temporary name: the renames are recorded, then done.
    const files = targets.filter((t): t is RestoreTarget => t?.tmpPath != null).map((t) => ({ tmp: t.tmpPath as string, path: t.path }));
    if (files.length > 0) {
      state.renaming = { seq: plan.seq.toString(), files };
      state.writing = notWriting(state, files.map((f) => f.tmp));
      await writeReplicaState(replica.dir, state);
      await commitFiles(files);
      state.renaming = null;
      await writeReplicaState(replica.dir, state);
    }
    result.segmentsRead = source.read;
    result.bytesWritten = apply.bytesWritten;
    if (toSvol) {
      // Each file as this restore leaves it (made durable above): the next one brings forward only these.
      const files: Record<string, SvolFile> = {};
      for (const t of targets) {
        const f = t && (await svolFile(t.path));
        if (t && f) files[t.volume] = f;
      }
      state.svol = { restoredSeq: plan.seq.toString(), restoredTs: plan.ts.toString(), inProgress: null, files };
      await writeReplicaState(replica.dir, state);
    }
    if (devices.length > 0) {
      for (const d of devices) state.devices[d.path] = { inProgress: null, restoredSeq: plan.seq.toString() };
      await writeReplicaState(replica.dir, state);
    }
    return result;
  } catch (e) {
    // Once the renames are recorded, the files stay for the next restore to rename.
    if (state.renaming) throw e;
    for (const t of targets) if (t && t.kind === 'file') await t.abort();
    for (const t of targets) if (t && t.kind !== 'file') await t.abort();
    const removed = targets.flatMap((t) => (t?.tmpPath ? [t.tmpPath] : []));
    if (removed.length > 0 && state.writing?.some((t) => removed.includes(t))) {
      // The error is what the user needs; a list left as it was costs the next restore a look at files already gone.
      state.writing = notWriting(state, removed);
      await writeReplicaState(replica.dir, state).catch(() => undefined);
    }
    throw e;
  } finally {
    // Its reads end before its descriptors close.
    await proving?.close();
    // Renamed into place, given up on, or left for the next restore to rename: another restore may write them now.
    for (const t of targets) await t?.release();
    await source.release();
  }
}

/** The plan; one refused while the SVOLs are rebuilt says why they are. */
function planOr<T>(changed: string | null, plan: () => T): T {
  try {
    return plan();
  } catch (e) {
    if (!changed || !isJshipError(e)) throw e;
    throw new JshipError(e.code, `the SVOLs must be rebuilt from a base (${changed}): ${e.template.message}`, { ...(e.template.hint ? { hint: e.template.hint } : {}), details: e.details });
  }
}

/**
 * Removes the temporary files that restores from this replica were writing
 * when they were killed (state.writing), whatever their target: before, one
 * stayed (up to a volume's size, hidden by its dot) until a restore to the
 * same path. One a live process holds (a restore from another replica into
 * the same path) stays.
 */
async function removeLeftovers(dir: string, state: ReplicaState): Promise<void> {
  const listed = state.writing ?? [];
  if (listed.length === 0) return;
  const kept: string[] = [];
  for (const tmp of listed) if (!(await removeLeftover(tmp))) kept.push(tmp);
  state.writing = kept;
  await writeReplicaState(dir, state);
}

function notWriting(state: ReplicaState, done: readonly string[]): string[] {
  return (state.writing ?? []).filter((t) => !done.includes(t));
}

/** Tape files and bytes of the segments a plan reads, by tape: the tape chain's in serial order, then the link's. */
export function pullList(cat: Catalog, segments: readonly SegmentRow[]): RestoreResult['plan']['pull'] {
  const files = new Map(cat.tapes().map((t) => [t.serial, t.file]));
  const by = new Map<number, { file: string; segments: number; bytes: number }>();
  for (const s of segments) {
    const e = by.get(s.serial) ?? { file: files.get(s.serial) ?? '?', segments: 0, bytes: 0 };
    e.segments++;
    e.bytes += s.frameLength;
    by.set(s.serial, e);
  }
  return [...by.entries()].sort(([a], [b]) => byChain(a, b)).map(([key, e]) => ({ ...tapeRef(key), ...e }));
}

/** `--target`: NAME=PATH pairs, a bare PATH for a single volume, or a directory (DIR/NAME.img each). */
async function resolveTargets(specs: Array<{ volume?: string; path: string }>, names: string[]): Promise<Array<{ volume: string; path: string }>> {
  const out = new Map<string, string>();
  for (const s of specs) {
    if (s.volume !== undefined) {
      if (!names.includes(s.volume)) throw new JshipError('USAGE', `${param('targets')} ${s.volume}=... names a volume that is not being restored`, { hint: `restoring: ${names.join(', ')}` });
      out.set(s.volume, resolve(s.path));
      continue;
    }
    if (s.path.endsWith('/')) await makeDirs(s.path);
    const st = await fsp.stat(s.path).catch(() => undefined);
    if (st?.isDirectory()) {
      for (const n of names) if (!out.has(n)) out.set(n, join(resolve(s.path), `${n}.img`));
    } else if (names.length === 1) {
      out.set(names[0] as string, resolve(s.path));
    } else {
      throw new JshipError('USAGE', `${param('targets')} ${s.path}: a bare path needs exactly one volume (restoring ${names.length})`, { hint: `use ${param('targets')} NAME=PATH for each, a directory, or ${param('volumes')} NAME` });
    }
  }
  const missing = names.filter((n) => !out.has(n));
  if (missing.length > 0) throw new JshipError('USAGE', `no ${param('targets')} for volume${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, { hint: `give ${param('targets')} NAME=PATH for each, or a directory, or select volumes with ${param('volumes')}` });
  return names.map((n) => ({ volume: n, path: out.get(n) as string }));
}

/**
 * Refuses targets a restore must not write: one file or device for two
 * volumes (the bytes of one would stand where the other's are said to be,
 * and only a point with a digest would catch it), and the replica's own
 * files (its tapes, SVOLs, catalogue: with --force a restore replaced the
 * very tape it read).
 */
async function checkTargets(targets: ReadonlyArray<{ volume: string; path: string }>, replicaDir: string): Promise<void> {
  const home = await fsp.realpath(replicaDir);
  const seen = new Map<string, string>();
  for (const t of targets) {
    const { real, id } = await whereIs(t.path);
    if (Replica.owns(home, real)) {
      throw new JshipError('USAGE', `${param('targets')} ${t.path} is among the replica's own files (${replicaDir}: its catalogue, tapes, SVOLs): a restore never writes there`, {
        hint: `name a file, directory or device outside the replica (or in a directory of your own inside it); to bring the SVOLs to a point, restore without ${param('targets')}`,
      });
    }
    // A file a group writes as its volume now: renamed over, the group would go on writing the file it replaced.
    const st = await fsp.stat(real, { bigint: true }).catch(() => undefined);
    const holder = st?.isFile() ? await volumeFileHolder(st) : undefined;
    if (holder) {
      throw new JshipError('TARGET_NOT_USABLE', `${t.path} is the volume of a group that process ${holder.pid} on ${holder.host} has open: a restore would put another file in its place, and the group would go on writing the one it replaced`, {
        hint: 'stop that group (its jship serve) first, or restore into another file',
      });
    }
    const other = seen.get(id);
    if (other !== undefined) {
      throw new JshipError('USAGE', `${param('targets')}: volumes ${other} and ${t.volume} would both be restored into the same file (${t.path})`, { hint: 'give each volume its own target: NAME=PATH for each, or a directory' });
    }
    seen.set(id, t.volume);
  }
}

/** Like Promise.all, but settles every promise before it throws the first error: nothing is left running. */
async function allOrFirstError<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const r = await Promise.allSettled(ps);
  const bad = r.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (bad) throw bad.reason;
  return r.map((x) => (x as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

function sameFiles(a: string[], b: string[]): boolean {
  const sb = [...b].sort();
  return a.length === b.length && [...a].sort().every((x, i) => x === sb[i]);
}
