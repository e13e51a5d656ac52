import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { settlesWithin } from '../core/deferred.js';
import { JshipError, isJshipError, param } from '../core/errors.js';
import { cleanIncoming, importLinkStream } from '../replica/import.js';
import { Replica } from '../replica/replica.js';
import { tapeRef } from '../replica/catalog.js';
import type { Lineage } from '../core/epoch.js';
import type { ResyncRequest } from '../core/resync-request.js';
import { resolvePoint } from '../replica/restore-plan.js';
import { restoreReplica } from '../replica/restore.js';
import type { Throttle } from '../io/throttle.js';
import type { FramePool } from '../tape/frame-pool.js';
import type { Channel } from './channel.js';
import { MessageType } from './frame.js';
import {
  MAX_WINDOW, decodeIdle, decodePrimaryHello, decodeTapeBegin, decodeTapeEnd, expect, message,
  type LinkStatus, type PrimaryHello, type TapeEnd,
} from './messages.js';
import type { LinkLog } from './primary-session.js';

export interface SecondaryOptions {
  replicaDir: string;
  /** This replica's name at the primary. */
  name: string;
  mode: 'pull' | 'push';
  pool: FramePool;
  log: LinkLog;
  /** Keep the SVOLs restored: up to the newest record, or up to now minus `delayNs`. */
  apply?: { delayNs: bigint };
  /** Pull: stop once the primary has nothing more to send. */
  once?: boolean;
  timeoutMs?: number;
  /** How long to wait for a replica another process holds (a restore) before giving up. */
  lockWaitMs?: number;
  /** Paces the tape bytes taken in (the link's flow control slows the primary to it). */
  throttle?: Throttle;
  /** Sent in the hello: an old primary being demoted asks for a resync base of these chunks (link/demote.ts). */
  resync?: ResyncRequest;
  /** A base arriving (it may span link tapes): volume bytes its records received so far cover, of all the volumes'. */
  onBaseProgress?: (p: BaseProgress) => void;
  /** Aborted: the wait for a replica another process holds ends (with its GROUP_LOCKED): a stop is not held up by a long restore. */
  signal?: AbortSignal;
}

export interface BaseProgress {
  baseId: bigint;
  bytes: number;
  totalBytes: number;
}

/** What the replica holds of its link chain: the resume position it reports. */
export interface Held {
  groupId: string | null;
  linkName: string | null;
  held: { serial: number; sha256: string; epoch?: number } | null;
  epochs: Lineage;
  /** The newest record held, of any chain. */
  lastSeq: string | null;
}

const exists = (p: string): Promise<boolean> => fsp.stat(p).then(() => true, () => false);

/** How a receiver waits for a replica another process holds: up to `lockWaitMs`, until `signal` is aborted. */
interface WaitOptions {
  log: LinkLog;
  lockWaitMs?: number;
  signal?: AbortSignal;
}

/** Opens the replica, waiting while another process (a restore, an import) holds it. */
async function openReplica(dir: string, o: WaitOptions): Promise<Replica> {
  return waitForReplica(o, () => Replica.open(dir, { yields: true }));
}

/** Runs `fn` (which opens the replica), waiting while another process (a restore, an import) holds it. */
async function waitForReplica<T>(o: WaitOptions, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + (o.lockWaitMs ?? 3_600_000);
  let told = false;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!isJshipError(e, 'GROUP_LOCKED') || Date.now() > deadline || o.signal?.aborted) throw e;
      if (!told) o.log({ event: 'waiting', why: e.message });
      told = true;
      await pause(500, o.signal);
      if (o.signal?.aborted) throw e;
    }
  }
}

/** Waits `ms`, or less when `signal` is aborted meanwhile (never throws). */
export async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await sleep(ms, undefined, signal ? { signal } : {}).catch(() => undefined);
}

/** Runs `fn` with the replica open (see openReplica). */
export async function withReplica<T>(dir: string, o: WaitOptions, fn: (r: Replica) => Promise<T>): Promise<T> {
  const r = await openReplica(dir, o);
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

export async function heldPosition(dir: string, o: WaitOptions): Promise<Held> {
  if (!(await exists(join(dir, 'replica.json')))) return { groupId: null, linkName: null, held: null, epochs: [], lastSeq: null };
  return withReplica(dir, o, async (r) => {
    // What a receiver killed mid-tape left (it holds the lock now: no import is running).
    await cleanIncoming(r);
    const tapes = r.catalog.tapes();
    const last = tapes.filter((t) => t.serial < 0 && t.status === 'complete').sort((a, b) => a.serial - b.serial)[0];
    const ref = last ? tapeRef(last.serial) : undefined;
    const newest = tapes.reduce<bigint | null>((m, t) => (t.lastSeq !== null && (m === null || t.lastSeq > m) ? t.lastSeq : m), null);
    return {
      groupId: r.config.groupId, linkName: r.config.linkName ?? null, epochs: r.catalog.lineage(), lastSeq: newest?.toString() ?? null,
      held: last && ref ? { serial: ref.serial, sha256: last.sha256, ...(ref.epoch ? { epoch: ref.epoch } : {}) } : null,
    };
  });
}

/**
 * The secondary's side of one connection, whoever dialled: reports its
 * position, creates the replica from the primary's hello when it is new,
 * then stores each link tape (received into the tapes directory, fsynced,
 * verified and catalogued by import) before confirming it. Returns when the
 * primary is caught up and `once` is set.
 */
export async function runSecondary(ch: Channel, o: SecondaryOptions): Promise<{ tapes: number; records: number; status: LinkStatus }> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  const pos = await heldPosition(o.replicaDir, o);
  if (pos.linkName !== null && pos.linkName !== o.name) {
    throw new JshipError('USAGE', `this replica is secondary "${pos.linkName}" at its primary, not "${o.name}"`, { hint: `leave out ${param('name')}, or give ${param('name')} ${pos.linkName}` });
  }
  // A directory that cannot become a replica is refused before the primary hears of this secondary.
  if (pos.groupId === null) await Replica.checkCreatable(o.replicaDir);
  await ch.send(message(MessageType.Hello, { role: 'secondary', groupId: pos.groupId, name: o.name, held: pos.held, mode: o.mode, epochs: pos.epochs, lastSeq: pos.lastSeq, window: MAX_WINDOW, ...(o.resync ? { resync: o.resync } : {}) }));
  const f = await ch.next(timeoutMs);
  expect(f, MessageType.Hello);
  const hello = decodePrimaryHello(f);
  if (pos.groupId !== null && hello.groupId !== pos.groupId) {
    throw new JshipError('LINK_FOREIGN', `${ch.peer} serves group ${hello.groupId}; this replica holds group ${pos.groupId}`, { hint: 'point the replica at its own primary' });
  }
  if (pos.groupId === null) await createReplica(o.replicaDir, hello, o.name);
  o.log({ event: 'connected', peer: ch.peer, host: hello.host, groupId: hello.groupId, mode: o.mode, held: pos.held?.serial ?? 0, primaryLastSeq: hello.status.lastSeq });
  let status = hello.status;
  let tapes = 0;
  let records = 0;
  // The secondary's pointers (§0078-0083): what the primary has for it, what is stored, what the SVOLs are being and have been restored to.
  const pointers: Pointers = { readScheduledSeq: status.lastSeq, readSeq: null, restoreScheduledSeq: null, restoredSeq: null };
  const baseSeen = { id: -1n, bytes: 0 };
  // Held while tapes come back to back; let go when the primary is idle and for each apply, so that restores can run.
  let replica: Replica | undefined;
  const release = async (): Promise<void> => {
    await replica?.close();
    replica = undefined;
  };
  // Pull with a window: the next tape is asked for once the last one's bytes are all here, while it is being stored.
  const read = (): Promise<void> => ch.send(message(MessageType.Read, { waitMs: o.once ? 0 : 10_000 }));
  let asked = false;
  const arrived = o.mode === 'pull' && hello.window > 1 ? async () => {
    await read();
    asked = true;
  } : undefined;
  try {
    for (;;) {
      if (o.mode === 'pull' && !asked) await read();
      asked = false;
      const pending = ch.next(o.mode === 'pull' ? timeoutMs + 10_000 : timeoutMs);
      // Taken below (awaited); until then a connection that closes (a stop) must not fail it with no one to take it.
      pending.catch(() => undefined);
      // Between two tapes, and while the next one is not here, another process asking for the replica
      // gets it: asked before the wait too, as tapes that come back to back never leave it waiting.
      while (replica) {
        if (await replica.wanted()) {
          o.log({ event: 'yielding', why: 'another process asked for the replica (a restore, an import): it goes first' });
          await release();
        } else if (await settlesWithin(pending, 200)) break;
      }
      const next = await pending;
      if (next.type === MessageType.Idle) {
        await release();
        status = decodeIdle(next).status;
        pointers.readScheduledSeq = status.lastSeq;
        if (o.apply) await apply(o, pointers);
        if (o.once) return { tapes, records, status };
        continue;
      }
      expect(next, MessageType.TapeBegin);
      replica ??= await openReplica(o.replicaDir, o);
      const got = await receiveTape(ch, replica, decodeTapeBegin(next).serial, o, timeoutMs, baseSeen, arrived);
      tapes++;
      records += got.records;
      await ch.send(message(MessageType.Confirm, { serial: got.serial, sha256: got.sha256 }));
      pointers.readSeq = got.lastSeq ?? pointers.readSeq;
      o.log({ event: 'tape-stored', serial: got.serial, bytes: got.bytes, records: got.records, seq: got.lastSeq, pointers: { ...pointers } });
      if (o.apply) {
        await release();
        await apply(o, pointers);
      }
    }
  } finally {
    await release();
  }
}


interface Pointers {
  readScheduledSeq: string | null;
  readSeq: string | null;
  restoreScheduledSeq: string | null;
  restoredSeq: string | null;
}

async function createReplica(dir: string, hello: PrimaryHello, name: string): Promise<void> {
  // Held for a moment, and like every hold of the receiver's, handed to a restore that asks.
  const opened = await Replica.openOrCreate(dir, async () => ({ groupId: hello.groupId, volumes: hello.volumes }), { yields: true });
  if (!opened) throw new JshipError('IO', `${dir}: the replica could not be created`, { hint: 'check the directory' });
  opened.replica.config.linkName = name;
  await opened.replica.saveConfig();
  await opened.replica.close();
}

/**
 * Receives one tape and imports it as it arrives (copied, hashed and
 * verified in one pass); the size and hash of TAPE_END must match what
 * arrived. `arrived` is called once all of it has (before it is stored).
 */
async function receiveTape(ch: Channel, replica: Replica, serial: number, o: SecondaryOptions, timeoutMs: number, base: { id: bigint; bytes: number }, arrived?: () => Promise<void>): Promise<{ serial: number; sha256: string; bytes: number; records: number; lastSeq: string | null }> {
  const where = `link tape ${serial} from ${ch.peer}`;
  const first = await ch.next(timeoutMs);
  expect(first, MessageType.TapeData);
  let end: TapeEnd | undefined;
  let bytes = first.payload.length;
  async function* chunks(): AsyncGenerator<Buffer> {
    yield first.payload;
    for (let f = await ch.next(timeoutMs); ; f = await ch.next(timeoutMs)) {
      if (f.type !== MessageType.TapeData) {
        expect(f, MessageType.TapeEnd);
        end = decodeTapeEnd(f);
        if (end.serial !== serial || end.bytes !== bytes) {
          throw new JshipError('LINK_PROTOCOL', `${where}: ${bytes} bytes arrived, TAPE_END says tape ${end.serial} of ${end.bytes} bytes`, { hint: 'it was not stored and is sent again' });
        }
        await arrived?.();
        return;
      }
      bytes += f.payload.length;
      if (o.throttle) await o.throttle.pass(f.payload.length);
      yield f.payload;
    }
  }
  const total = replica.config.volumes.reduce((n, v) => n + v.size, 0);
  const onBaseSegment = (id: bigint, covered: number): void => {
    if (id !== base.id) Object.assign(base, { id, bytes: 0 });
    // A tape sent again after an interruption covers the same bytes again: never past the whole.
    base.bytes = Math.min(total, base.bytes + covered);
    o.onBaseProgress?.({ baseId: id, bytes: base.bytes, totalBytes: total });
  };
  // Each payload's memory goes back to the channel once the import holds nothing of it (the next is read into it).
  const report = await importLinkStream(replica, first.payload, chunks, where, { pool: o.pool, expectSha256: () => end?.sha256, onBaseSegment, giveBack: (c) => ch.giveBack(c) });
  if (report.outcome !== 'imported' && report.outcome !== 'duplicate' && report.outcome !== 'replaced') {
    throw new JshipError(report.code ?? 'TAPE_DAMAGED', `link tape ${serial} was not stored: ${report.message}`, { hint: 'it is sent again; if this repeats, check the replica (jship verify)' });
  }
  const done = end as TapeEnd | undefined;
  if (!done) throw new JshipError('LINK_PROTOCOL', `${where}: no TAPE_END`, { hint: 'it is sent again' });
  return { serial, sha256: done.sha256, bytes, records: report.records, lastSeq: report.updates?.lastSeq.toString() ?? null };
}

/** Restores the SVOLs up to the newest record, or to now minus the delay; a point not restorable yet is waited for. */
async function apply(o: SecondaryOptions, pointers: Pointers): Promise<void> {
  const delay = o.apply?.delayNs ?? 0n;
  try {
    const latest = await withReplica(o.replicaDir, o, async (r) => resolvePoint(r.catalog, { kind: 'latest' }));
    const cutoff = BigInt(Date.now()) * 1_000_000n - delay;
    const point = delay === 0n || latest.ts <= cutoff ? { kind: 'latest' as const } : { kind: 'until' as const, ts: cutoff, exclusive: false };
    pointers.restoreScheduledSeq = point.kind === 'latest' ? latest.seq.toString() : null;
    // As the receiver itself: yielding (a restore that asks waits for this one), and waiting for one that runs.
    const res = await waitForReplica(o, () => restoreReplica(o.replicaDir, { point, yields: true }));
    pointers.restoredSeq = res.plan.seq.toString();
    pointers.restoreScheduledSeq = pointers.restoredSeq;
    if (res.plan.records > 0) o.log({ event: 'applied', seq: res.plan.seq.toString(), ts: res.plan.ts.toString(), records: res.plan.records, pointers: { ...pointers } });
  } catch (e) {
    if (!isJshipError(e, 'RESTORE_REFUSED')) throw e;
    o.log({ event: 'apply-waiting', why: e.message });
  }
}
