import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { compareLineages, epochStart, generationOf, lineageText, type Lineage } from '../core/epoch.js';
import { JshipError, isJshipError, param } from '../core/errors.js';
import { RecordType } from '../core/record.js';
import type { HostPort } from '../io/sockets.js';
import { makeDirs, readJsonFile, writeFileAtomic } from '../io/files.js';
import { groupPaths, readGroupConfig } from '../journal/group-files.js';
import { JournalGroup } from '../journal/journal-group.js';
import { Replica, type ReplicaWait } from '../replica/replica.js';
import { readReplicaState } from '../replica/replica-state.js';
import { restoreReplica } from '../replica/restore.js';
import { importTapes, type ImportOptions } from '../replica/import.js';
import { svolPath } from '../replica/svol-files.js';
import { expandTapeSources, readLabel } from '../tape/tape-file.js';
import { readChainState } from '../tape/chain-state.js';
import { DirDestination } from '../tape/destination.js';
import { exportGroup } from '../tape/export.js';
import { FramePool } from '../tape/frame-pool.js';
import { dial } from './dial.js';
import { MessageType } from './frame.js';
import { decodePrimaryHello, expect, message } from './messages.js';
import { resyncRequest, type ResyncRequest } from '../core/resync-request.js';
import type { LinkLog } from './primary-session.js';
import { runSecondary } from './secondary-session.js';

export interface DemoteOptions {
  /** The replica the group's volumes become the SVOLs of (new or empty; default GROUP_DIR/replica). */
  replicaDir?: string;
  /** The new primary's link address (`jship link serve` there), and the link key. */
  from?: HostPort;
  key?: Buffer;
  /**
   * Or the new primary's tapes (directories, files, s3:// prefixes): the
   * first run asks for the resync in a file (GROUP_DIR/resync-request.json)
   * to carry to the new primary (`jship export --resync-for`); a run with
   * the tapes that export wrote applies it.
   */
  tapes?: string[];
  importOptions?: ImportOptions;
  /** This site's name at the new primary. */
  name: string;
  log: LinkLog;
  /** Ask for a full base instead of the differing chunks (when those cannot be known). */
  full?: boolean;
  timeoutMs?: number;
  /** How long each open of the replica waits while another command uses it (an import, a restore); default: refused at once. */
  wait?: ReplicaWait;
}

/** GROUP_DIR/demoted.json: written before the volumes change hands; the group is not opened again. */
interface Demoted {
  format: 1;
  replica: string;
  at: string;
  /** The lineage of the primary this site follows now. */
  epochs: Lineage;
  takeoverSeq: string;
  full: boolean;
  /** This site's writes after the takeover point: what it asks for again, and where they are kept. */
  diverged: { records: number; bytes: number; chunks: number; tape: string | null; request: ResyncRequest | null };
}

export interface DemoteResult {
  groupDir: string;
  replica: string;
  epoch: number;
  takeoverSeq: bigint;
  /** The split-brain window: this site's records after the takeover point, kept on a tape of their own. */
  diverged: { records: number; bytes: number; chunks: number; tape: string | null };
  /** What the new primary sent: link tapes and their bytes (base and records). */
  received: { tapes: number; records: number };
  /** The SVOLs (this site's volumes) brought to a consistent point of the new epoch; null while awaiting. */
  applied: { seq: bigint; ts: bigint; bytesWritten: number; proved: boolean | null } | null;
  /**
   * Following by tapes: the resync (or full) base is not among the tapes
   * yet. `request`: the file to carry to the new primary; `command`: what
   * to run there; then demote again with the tapes it writes.
   */
  awaiting: { request: string | null; command: string } | null;
  /** Following by tapes: tapes the replica refused (another promotion's, damaged beyond use), with why. */
  refused: Array<{ source: string; code: string | null; message: string }>;
  volumeBytes: number;
  full: boolean;
  /** A demote interrupted earlier (after its volumes changed hands) was carried on. */
  resumed: boolean;
}

/**
 * Failback, step 1 (§0161-0166): the old primary becomes a secondary of the
 * new epoch. Its writes after the takeover point (still in its journal) are
 * kept on a tape of their own; its volumes become the SVOLs of a replica in
 * place; it asks the new primary for a resync base of the chunks that can
 * differ — its own writes after the takeover point and every chunk written in
 * the new epoch — never a full copy, and applies it with the records around
 * it. From then on it is an ordinary secondary (`jship link pull`), and
 * `jship promote` makes it the primary again (step 2).
 */
export async function demoteGroup(groupDir: string, o: DemoteOptions): Promise<DemoteResult> {
  groupDir = resolve(groupDir);
  const replicaDir = resolve(o.replicaDir ?? join(groupDir, 'replica'));
  let demoted = await readDemoted(groupDir);
  const resumed = demoted !== null;
  if (demoted && demoted.replica !== replicaDir) {
    throw new JshipError('USAGE', `${groupDir} was demoted into replica ${demoted.replica}, not ${replicaDir}`, { hint: `leave out ${param('replicaDir')}, or give ${param('replicaDir')} ${demoted.replica}` });
  }
  const config = await readGroupConfig(groupDir);
  if ((o.tapes === undefined) === (o.from === undefined || o.key === undefined)) throw new JshipError('USAGE', 'demote follows the new primary over the link or by its tapes: give one', { hint: `${param('from')} HOST:PORT or ${param('tapes')} TAPES` });
  const sources = o.tapes ? await tapeFiles(o.tapes, o.importOptions) : undefined;
  demoted ??= await prepare(groupDir, replicaDir, o, sources);
  await makeReplica(replicaDir, config, o.name, o.wait);
  let refused: DemoteResult['refused'] = [];
  const result = (received: DemoteResult['received'], applied: DemoteResult['applied'], awaiting: DemoteResult['awaiting']): DemoteResult => ({
    groupDir, replica: replicaDir, epoch: generationOf(demoted.epochs), takeoverSeq: BigInt(demoted.takeoverSeq),
    diverged: { records: demoted.diverged.records, bytes: demoted.diverged.bytes, chunks: demoted.diverged.chunks, tape: demoted.diverged.tape },
    received, applied, awaiting, refused,
    volumeBytes: config.volumes.reduce((n, v) => n + v.extents.reduce((m, e) => m + e.size, 0), 0), full: demoted.full, resumed,
  });
  if (sources) {
    // By tapes: the request goes to the new primary in a file; its tapes come back and are applied once they hold the base.
    const request = demoted.diverged.request ? await writeRequest(groupDir, config.groupId, demoted.diverged.request) : null;
    const imported = await importTapes(replicaDir, sources, { ...o.importOptions, ...(o.wait ? { wait: o.wait } : {}) });
    // A tape the replica refused (of another promotion, damaged beyond use) is said, not passed over.
    refused = imported.tapes.filter((x) => x.outcome === 'refused').map((t) => ({ source: t.source, code: t.code, message: t.message }));
    const received = { tapes: imported.tapes.filter((t) => t.outcome === 'imported' || t.outcome === 'partial').length, records: imported.tapes.reduce((n, t) => n + (t.outcome === 'imported' || t.outcome === 'partial' ? t.records : 0), 0) };
    try {
      return result(received, await apply(replicaDir, demoted, o.wait), null);
    } catch (e) {
      if (!isJshipError(e, 'RESTORE_REFUSED') || (await readReplicaState(replicaDir)).svol.restoredSeq !== '0') throw e;
      const command = request ? `jship export GROUP_DIR --to MEDIA --resync-for ${request}` : 'jship export GROUP_DIR --to MEDIA --base';
      o.log({ event: 'awaiting-resync', request, command, why: e.message });
      return result(received, null, { request, command });
    }
  }
  const pool = new FramePool();
  let received = { tapes: 0, records: 0 };
  try {
    // The resync is asked for until the replica holds the new primary's first tape; then it resumes like any secondary.
    const held = await withReplica(Replica.open(replicaDir, o.wait ? { wait: o.wait } : {}), (r) => r.catalog.tapes().length);
    const ch = await dial(o.from as HostPort, o.key as Buffer, config.groupId);
    try {
      const r = await runSecondary(ch, {
        replicaDir, name: o.name, mode: 'pull', pool, log: o.log, once: true,
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
        ...(o.wait ? { lockWaitMs: o.wait.ms } : {}),
        ...(held === 0 && demoted.diverged.request ? { resync: demoted.diverged.request } : {}),
      });
      received = { tapes: r.tapes, records: r.records };
    } finally {
      ch.close();
    }
  } finally {
    await pool.close();
  }
  return result(received, await apply(replicaDir, demoted, o.wait), null);
}

/**
 * The SVOLs — this site's volumes — to a consistent point of the new epoch,
 * proved against the primary's digest: the first time from the resync base
 * written for this demotion (or a full base), then forward as usual.
 */
async function apply(replicaDir: string, demoted: Demoted, wait: ReplicaWait | undefined): Promise<NonNullable<DemoteResult['applied']>> {
  const state = await readReplicaState(replicaDir);
  const first = state.svol.restoredSeq === '0' && !demoted.full;
  const id = demoted.diverged.request?.id;
  const r = await restoreReplica(replicaDir, { point: { kind: 'latest' }, ...(wait ? { wait } : {}), ...(first ? { adopt: id !== undefined ? { requestId: id } : true } : {}) });
  return { seq: r.plan.seq, ts: r.plan.ts, bytesWritten: r.bytesWritten, proved: r.proof ? r.proof.equal : null };
}

/** GROUP_DIR/resync-request.json: what the new primary's `jship export --resync-for` reads (written once, the same on every run). */
async function writeRequest(groupDir: string, groupId: string, request: ResyncRequest): Promise<string> {
  const path = join(groupDir, 'resync-request.json');
  await writeFileAtomic(path, `${JSON.stringify({ format: 1, groupId, request }, null, 2)}\n`);
  return path;
}

/** The new primary's tapes, named as import names them; a drive or a pipe is read once and cannot be looked at first. */
async function tapeFiles(sources: string[], opts: ImportOptions = {}): Promise<string[]> {
  for (const s of sources) {
    const st = s === '-' ? null : await fsp.stat(s).catch(() => undefined);
    if (s === '-' || st?.isCharacterDevice() || st?.isFIFO()) {
      throw new JshipError('USAGE', `demote ${param('tapes')} ${s}: a drive or a pipe can be read only once`, { hint: `copy its tapes into a directory first (jship import into a scratch replica keeps them under its tapes/), then ${param('tapes')} that directory` });
    }
  }
  if ((await expandTapeSources(sources, opts.s3)).length === 0) throw new JshipError('USAGE', `demote ${param('tapes')} ${sources.join(' ')}: no tapes there`, { hint: 'name directories holding the new primary\'s *.tar.zst tapes, tape files, or s3://BUCKET/PREFIX' });
  return sources;
}

/** The newest lineage of this group among the tapes' labels (epoch 1 when none is newer). */
async function lineageOfTapes(sources: string[], groupId: string, opts: ImportOptions = {}): Promise<Lineage> {
  let newest: Lineage = [];
  for (const f of await expandTapeSources(sources, opts.s3)) {
    const label = await readLabel(f).catch(() => undefined);
    if (!label || label.groupId !== groupId) continue;
    const l = label.epochs ?? [];
    const how = compareLineages(l, newest);
    if (how === 'forked') refuse(`the tapes descend from different promotions (${lineageText(l)} and ${lineageText(newest)})`, 'follow the tapes of one primary');
    if (how === 'newer') newest = l;
  }
  return newest;
}

/** `fenced`: the group learnt of the newer epoch before it was refused, and keeps refusing writes (fenced.json). */
function refuse(why: string, hint: string, fenced = false): never {
  throw new JshipError('DEMOTE_REFUSED', why, { hint: `${hint}. ${fenced ? 'The group is fenced now (a newer epoch exists); nothing else was changed' : 'Nothing was changed'}` });
}

/**
 * Everything before the volumes change hands: the new epoch's lineage, the
 * takeover point, this site's chunks written after it, the tape that keeps
 * those writes; then demoted.json (from here the group is not opened again).
 */
async function prepare(groupDir: string, replicaDir: string, o: DemoteOptions, tapes: string[] | undefined): Promise<Demoted> {
  const config = await readGroupConfig(groupDir);
  for (const v of config.volumes) {
    const st = v.extents.length === 1 ? await fsp.stat(v.extents[0]?.path ?? '').catch(() => undefined) : undefined;
    if (!st?.isFile()) refuse(`volume "${v.name}" is ${v.extents.length > 1 ? 'a volume group of several files' : 'not a regular file'}: demote turns file volumes into SVOLs in place`, 'follow the new primary with a new replica instead (its first tape a full base), then restore onto the devices');
  }
  await Replica.checkCreatable(replicaDir);
  // No consumer: nothing is purged (the records after the takeover point are read, and kept on a tape).
  const group = await JournalGroup.open(groupDir, { checkpointIntervalMs: 0, consumers: [] });
  let demoted: Demoted;
  try {
    const mine = group.epochs;
    const where = tapes ? `the tapes in ${tapes.join(' ')}` : `the primary at ${o.from?.host}:${o.from?.port}`;
    let newer = tapes ? await lineageOfTapes(tapes, config.groupId, o.importOptions) : group.fence?.epochs ?? await probe(o, config.groupId);
    if (tapes && group.fence && compareLineages(group.fence.epochs, newer) === 'newer') newer = group.fence.epochs;
    const how = compareLineages(mine, newer);
    if (how !== 'older') refuse(`${where} ${tapes ? 'are' : 'is'} of ${lineageText(newer)}; this group is of ${lineageText(mine)}${how === 'same' ? ': the same epoch, no takeover happened' : ': they descend from different promotions'}`, 'demote a site only to the primary that took over from it');
    const g = generationOf(mine);
    const takeover = epochStart(newer, g + 1) - 1n;
    const full = o.full === true;
    // A newer epoch exists: the group is fenced whether or not the demotion goes on.
    await group.fenceBy(newer, `jship demote (${where})`);
    const last = group.journal.writtenSeq - 1n;
    if (!full) {
      const fullHint = 'demote with --full (a full base)';
      if (generationOf(newer) !== g + 1) refuse(`${lineageText(newer)} is more than one promotion after this group's epoch ${g}: the chunks written in between are not known`, fullHint, true);
      if (last < takeover) refuse(`this group's last record is seq ${last}, before the takeover point (seq ${takeover}): its volumes lack records the new primary had`, fullHint, true);
      if (last > takeover && group.journal.outSeq > takeover + 1n) refuse(`this group's records ${takeover + 1n}..${group.journal.outSeq - 1n}, written after the takeover point, were purged from its journal: which chunks they changed is not known`, `${fullHint}; its tapes keep those records`, true);
      if (group.state === 'suspended' || group.state === 'resync-pending') refuse(`this group is ${group.state}: writes after the takeover point may be in its dirty bitmap only`, fullHint, true);
    }
    // The split-brain window: this site's writes after the takeover point, their chunks, and a tape that keeps them.
    const chunkSize = group.config.chunkSize;
    const chunks = group.volumes.map(() => new Set<number>());
    let records = 0;
    let bytes = 0;
    if (last > takeover && group.journal.outSeq <= takeover + 1n) {
      for await (const r of group.records(takeover + 1n)) {
        if (r.header.type === RecordType.Marker) continue;
        records++;
        bytes += r.header.length;
        const set = chunks[r.header.volume];
        const end = r.header.offset + Math.max(r.header.length, 1) - 1;
        for (let c = Math.floor(r.header.offset / chunkSize); c <= Math.floor(end / chunkSize); c++) set?.add(c);
      }
    }
    const tape = last > takeover && group.journal.outSeq <= takeover + 1n ? await keepDiverged(group, groupDir, takeover) : null;
    const count = chunks.reduce((n, s) => n + s.size, 0);
    demoted = {
      format: 1, replica: replicaDir, at: new Date().toISOString(), epochs: newer, takeoverSeq: takeover.toString(), full,
      diverged: { records, bytes, chunks: count, tape, request: full ? null : resyncRequest(mine, takeover, chunkSize, chunks.map((s) => [...s].sort((a, b) => a - b)), randomUUID()) },
    };
  } finally {
    await group.close();
  }
  await writeFileAtomic(groupPaths(groupDir).demoted, `${JSON.stringify(demoted, null, 2)}\n`);
  o.log({ event: 'demoted', group: groupDir, replica: replicaDir, takeoverSeq: demoted.takeoverSeq, diverged: { records: demoted.diverged.records, chunks: demoted.diverged.chunks, tape: demoted.diverged.tape } });
  return demoted;
}

/** The records after the takeover point on a tape of the group's chain, in GROUP_DIR/diverged (the chain state is left as it was). */
async function keepDiverged(group: JournalGroup, groupDir: string, takeover: bigint): Promise<string> {
  const dir = join(groupDir, 'diverged');
  await makeDirs(dir);
  const chain = await readChainState(groupDir);
  const r = await exportGroup(group, {
    destination: new DirDestination(dir),
    keepUntilAck: true,
    chain: {
      state: { ...chain, committing: null, pendingAcks: [], exportedSeq: takeover.toString(), ackedSeq: takeover.toString() },
      beforeSend: async () => undefined,
    },
  });
  const t = r.tapes[0];
  if (!t) throw new JshipError('IO', `no tape was written of the records after seq ${takeover}`, { hint: 'this is a bug in jship' });
  return t.location;
}

/** The new primary's lineage, from its hello (the session goes no further). */
async function probe(o: DemoteOptions, groupId: string): Promise<Lineage> {
  const ch = await dial(o.from as HostPort, o.key as Buffer, groupId);
  try {
    // Under a name of its own: the probe's registration, gone when it ends, never meets the session that follows.
    await ch.send(message(MessageType.Hello, { role: 'secondary', groupId, name: `${o.name.slice(0, 56)}.probe`, held: null, mode: 'pull', epochs: [], lastSeq: null }));
    const f = await ch.next(o.timeoutMs ?? 30_000);
    expect(f, MessageType.Hello);
    return decodePrimaryHello(f).epochs;
  } finally {
    ch.close();
  }
}

/** The replica whose SVOLs are the group's volume files, in place (symbolic links); made again where a killed demote left off. */
async function makeReplica(dir: string, config: Awaited<ReturnType<typeof readGroupConfig>>, name: string, wait: ReplicaWait | undefined): Promise<void> {
  const opened = await Replica.openOrCreate(dir, async () => ({ groupId: config.groupId, volumes: config.volumes.map((v) => ({ name: v.name, size: v.extents.reduce((n, e) => n + e.size, 0) })) }), wait ? { wait } : {});
  if (!opened) throw new JshipError('IO', `${dir}: the replica could not be created`, { hint: 'check the directory' });
  const r = opened.replica;
  try {
    if (r.config.groupId !== config.groupId) throw new JshipError('REPLICA_NOT_EMPTY', `${dir} is a replica of group ${r.config.groupId}, not of ${config.groupId}`, { hint: 'name a new or empty directory with --replica' });
    if (r.config.linkName === undefined) {
      r.config.linkName = name;
      await r.saveConfig();
    }
    await makeDirs(join(dir, 'svol'));
    for (const v of config.volumes) {
      const link = svolPath(dir, v.name);
      const target = v.extents[0]?.path ?? '';
      const now = await fsp.readlink(link).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? null : `not a link (${e.code})`));
      if (now === target) continue;
      if (now !== null) throw new JshipError('REPLICA_NOT_EMPTY', `${link} is ${now.startsWith('not a link') ? 'a file' : `a link to ${now}`}, not to the volume ${target}`, { hint: 'move it away, then demote again' });
      await fsp.symlink(target, link);
    }
  } finally {
    await r.close();
  }
}

/** Runs `fn` with the replica `opening` gives (opened with its lock, or a view without it), then closes it. */
async function withReplica<T>(opening: Promise<Replica>, fn: (r: Replica) => T | Promise<T>): Promise<T> {
  const r = await opening;
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

/** What `jship status` says of a demoted group: the primary it follows now, and how far its replica got. */
export interface DemotedStatus {
  dir: string;
  groupId: string;
  /** `demoting` until the first resync is applied to the volumes; `secondary` from then on. */
  role: 'demoting' | 'secondary';
  /** The epoch of the primary this site follows (its lineage), and where it took over. */
  epoch: { generation: number; startSeq: bigint };
  takeoverSeq: bigint;
  demotedAt: string;
  full: boolean;
  diverged: { records: number; bytes: number; chunks: number; tape: string | null };
  replica: { dir: string; lastSeq: bigint | null; lastContact: string | null; appliedSeq: bigint | null; appliedTs: bigint | null };
}

/**
 * The status of a demoted group (null: the group was not demoted). Reads
 * its replica's catalogue as committed so far, without its lock: a status
 * asked while an import or a restore holds the replica is answered.
 */
export async function demotedStatus(groupDir: string): Promise<DemotedStatus | null> {
  groupDir = resolve(groupDir);
  const d = await readDemoted(groupDir);
  if (!d) return null;
  const config = await readGroupConfig(groupDir);
  const held = await withReplica(Replica.view(d.replica), (r) => r.catalog.tapes().reduce<{ lastSeq: bigint | null; lastContact: string | null }>((m, t) => ({
    lastSeq: t.lastSeq !== null && (m.lastSeq === null || t.lastSeq > m.lastSeq) ? t.lastSeq : m.lastSeq,
    lastContact: m.lastContact === null || t.importedAt > m.lastContact ? t.importedAt : m.lastContact,
  }), { lastSeq: null, lastContact: null })).catch((e: unknown) => {
    // A demote killed before it made the replica.
    if (isJshipError(e, 'REPLICA_NOT_FOUND')) return { lastSeq: null, lastContact: null };
    throw e;
  });
  const state = await readReplicaState(d.replica);
  const applied = state && state.svol.restoredSeq !== '0' ? BigInt(state.svol.restoredSeq) : null;
  const generation = generationOf(d.epochs);
  return {
    dir: groupDir, groupId: config.groupId, role: applied === null ? 'demoting' : 'secondary',
    epoch: { generation, startSeq: epochStart(d.epochs, generation) }, takeoverSeq: BigInt(d.takeoverSeq), demotedAt: d.at, full: d.full,
    diverged: { records: d.diverged.records, bytes: d.diverged.bytes, chunks: d.diverged.chunks, tape: d.diverged.tape },
    replica: { dir: d.replica, ...held, appliedSeq: applied, appliedTs: applied !== null && state?.svol.restoredTs ? BigInt(state.svol.restoredTs) : null },
  };
}

async function readDemoted(groupDir: string): Promise<Demoted | null> {
  const path = groupPaths(groupDir).demoted;
  return readJsonFile<Demoted | null>(path, () => null, (x) => {
    const v = x as Demoted;
    if (v.format !== 1 || typeof v.replica !== 'string' || typeof v.takeoverSeq !== 'string' || typeof v.diverged !== 'object') throw new Error('unexpected fields');
    return v;
  }, (why) => new JshipError('DEMOTE_STATE_DAMAGED', `${path} is damaged: ${why}`, { hint: 'the demote was interrupted: restore the file from the replica\'s side, or follow the primary with a new replica' }));
}
