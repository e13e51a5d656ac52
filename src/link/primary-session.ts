import type { EventLog, JshipEvent } from '../core/events.js';
import { hostname } from 'node:os';
import { JshipError } from '../core/errors.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { EMPTY_CHAIN } from '../tape/chain-state.js';
import { exportGroup } from '../tape/export.js';
import { trailerEffects } from '../tape/label.js';
import { compareLineages, epochEnd, generationOf, lineageText, onLineage } from '../core/epoch.js';
import { resyncChunks } from '../journal/resync-chunks.js';
import type { FramePool } from '../tape/frame-pool.js';
import { throttled } from '../tape/destination.js';
import type { Throttle } from '../io/throttle.js';
import type { Channel } from './channel.js';
import { MessageType } from './frame.js';
import { LinkDestination } from './link-destination.js';
import {
  decodeConfirm, decodeRead, decodeSecondaryHello, expect, message,
  type LinkStatus, type SecondaryHello,
} from './messages.js';
import { newSecondary, readRegistry, updateRegistry, type InflightTape, type SecondaryState } from './registry.js';

/** What a link process reports: one JSON line each under --json. */
/** The link's events are the product's events (core/events.ts). */
export type LinkEvent = JshipEvent;
export type LinkLog = EventLog;

export interface PrimaryOptions {
  group: JournalGroup;
  pool: FramePool;
  log: LinkLog;
  /** Update records per link tape, at most (bytes of records). */
  maxTapeBytes?: number;
  /** Silence from the secondary that ends the session. */
  timeoutMs?: number;
  /** Push mode: how often an IDLE tells the receiver the primary is alive. */
  heartbeatMs?: number;
  /** Told the secondary's name once its hello is read. */
  onName?: (name: string) => void;
  /** Paces the tape bytes sent (a bandwidth limit). */
  throttle?: Throttle;
}

/**
 * Update records per link tape, at most: each tape costs a commit at both
 * ends (about 50 ms of a pull here), and 256 MiB tapes pulled a GiB 8-10 %
 * faster than 64 MiB ones (BENCHMARKS session 15). Under journal pressure a
 * tape stops at a sixteenth of the journal's data area, as a tape export's
 * does: it is confirmed, and the journal purged, sooner.
 */
const DEFAULT_LINK_TAPE_BYTES = 256 * 1024 * 1024;
/**
 * Secondaries with a session right now, by group directory and name (one
 * connection per secondary): the session's channel, and when it has ended.
 */
const active = new Map<string, { ch: Channel; ended: Promise<void> }>();
/** How long a new connection waits for the session of a connection its secondary has already closed. */
const OLD_SESSION_WAIT_MS = 10_000;

export async function linkStatus(group: JournalGroup, confirmed: bigint): Promise<LinkStatus> {
  const st = await group.status();
  return {
    lastSeq: st.sequence.last?.toString() ?? null, lastTs: st.time.last?.toString() ?? null,
    outSeq: st.journal.out.seq.toString(), inSeq: st.journal.in.seq.toString(),
    usagePercent: st.journal.usagePercent, confirmedSeq: confirmed.toString(),
  };
}

function positionRefused(name: string, held: SecondaryHello['held'], s: SecondaryState | undefined): never {
  const mine = !s || s.confirmed.serial === 0 ? 'none confirmed' : `link tape ${s.confirmed.serial} (${s.confirmed.sha256?.slice(0, 12)}…)`;
  const theirs = held ? `link tape ${held.serial} (${held.sha256.slice(0, 12)}…)` : 'no link tape';
  throw new JshipError('LINK_POSITION', `secondary "${name}" says it holds ${theirs}; this primary's record says ${mine}: nothing was sent`, {
    hint: 'a replica restored from an older copy, another replica using the same name, or a forged position. Give the replica another --name (it gets a new base), or unregister the old one: jship link forget GROUP_DIR NAME',
  });
}

/**
 * The primary's side of one connection, whoever dialled: checks the
 * secondary's hello and resume position against its own record, then
 * sends link tapes (pull: when asked with READ; push: as records come),
 * up to the window's count before the oldest is confirmed (sendLoop); after
 * each confirmation it purges what every consumer has secured.
 */
export async function runPrimary(ch: Channel, o: PrimaryOptions): Promise<void> {
  const { group, log } = o;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const hello = decodeSecondaryHello(await firstFrame(ch, timeoutMs));
  const name = hello.name;
  o.onName?.(name);
  if (hello.groupId !== null && hello.groupId !== group.config.groupId) {
    throw new JshipError('LINK_FOREIGN', `secondary "${name}" holds a replica of group ${hello.groupId}; this primary serves group ${group.config.groupId}`, { hint: 'point it at a primary of its own group, or give it a new replica directory' });
  }
  await checkEpochs(group, hello, ch.peer);
  const resync = hello.resync ? resyncChunks(group, hello.resync, (why): never => {
    throw new JshipError('LINK_REFUSED', `secondary "${name}" asks for a resync as an old primary: ${why}`, {
      hint: 'demote it with --full (a full base), or follow this primary with a new replica',
    });
  }) : undefined;
  const key = `${group.dir}\0${name}`;
  // A secondary back at once (`link pull --once` run again) found the session of the connection it had
  // just closed still ending here, and was refused as "connected already". A closed one is waited for.
  const old = active.get(key);
  if (old?.ch.gone) await Promise.race([old.ended, new Promise((resolve) => setTimeout(resolve, OLD_SESSION_WAIT_MS).unref())]);
  if (active.has(key)) {
    throw new JshipError('LINK_REFUSED', `secondary "${name}" is connected already`, { hint: 'one connection per secondary: stop the other link process of that replica' });
  }
  let ended!: () => void;
  active.set(key, { ch, ended: new Promise<void>((resolve) => (ended = resolve)) });
  let registered = false;
  try {
    const sec = await updateRegistry(group.dir, (r) => {
      let s = r.secondaries.find((x) => x.name === name);
      if (!s) {
        const from = followsFromEarlierEpoch(group, hello);
        if (hello.held !== null && from === null) positionRefused(name, hello.held, undefined);
        s = newSecondary(name, from ?? group.journal.writtenSeq - 1n, ch.peer);
        // A replica of an earlier epoch resumes after the newest record it holds, when this journal still has the next one;
        // an old primary being demoted gets a resync base of the chunks it lacks instead of a full base.
        if ((from !== null && from + 1n >= group.journal.outSeq) || resync) s.needsBase = false;
        r.secondaries.push(s);
        registered = true;
      } else {
        if (resync) throw new JshipError('LINK_POSITION', `secondary "${name}" asks for a resync as an old primary being demoted, but it is registered here already`, { hint: `demote with another --name, or unregister the old one: jship link forget GROUP_DIR ${name}` });
        const h = hello.held;
        const sameAsConfirmed = h === null ? s.confirmed.serial === 0 : h.serial === s.confirmed.serial && h.sha256 === s.confirmed.sha256;
        if (!sameAsConfirmed) {
          // It stored tapes in flight before the connection broke (in order: holding the second means it holds the first too).
          const sent = [s.inflight, s.inflightNext].filter((t): t is InflightTape => !!t);
          const at = h === null ? -1 : sent.findIndex((t) => t.serial === h.serial && t.sha256 === h.sha256);
          if (at < 0) positionRefused(name, h, s);
          for (const t of sent.slice(0, at + 1)) confirm(s, t, 0);
        }
        s.inflight = null;
        delete s.inflightNext;
        s.address = ch.peer;
        delete s.standby;
        if (s.detached) {
          // Back after a failover: it pins the journal again; what was purged meanwhile comes as a new base.
          delete s.detached;
          if (BigInt(s.confirmed.seq) + 1n < group.journal.outSeq) s.needsBase = true;
        }
      }
      s.lastSeen = new Date().toISOString();
      return { ...s };
    });
    log({ event: 'secondary-connected', name, peer: ch.peer, mode: hello.mode, confirmedSeq: sec.confirmed.seq, newSecondary: sec.confirmed.serial === 0 });
    // Tapes in flight: what the secondary takes (at most MAX_WINDOW, decodeSecondaryHello sees to it).
    const window = hello.window;
    await ch.send(message(MessageType.Hello, {
      role: 'primary', groupId: group.config.groupId, volumes: group.volumes.map((v) => ({ name: v.name, size: v.size })), host: hostname(), epochs: group.epochs,
      status: await linkStatus(group, BigInt(sec.confirmed.seq)), window,
    }));
    await group.purgeSecured();
    if (resync) log({ event: 'resync', name, chunks: resync.reduce((n, v) => n + v.length, 0), chunkSize: group.config.chunkSize, fromSeq: hello.resync?.fromSeq ?? null });
    await sendLoop(ch, o, name, hello.mode, window, timeoutMs, resync ? { chunks: resync, ...(hello.resync?.id !== undefined ? { id: hello.resync.id } : {}) } : undefined);
  } finally {
    // A secondary registered by this session that never confirmed a tape (refused at its end,
    // gone before its base arrived) does not stay behind to pin the journal.
    if (registered) await forgetUnconfirmed(group, name, log).catch(() => undefined);
    active.delete(key);
    ended();
  }
}

/**
 * The epochs of a secondary against this primary's: a replica that follows
 * a newer epoch of the group means another site was promoted — this group is
 * fenced (durably) and the session refused; a replica of another promotion,
 * or one that holds records this primary's lineage does not (the old
 * primary's after a takeover), is refused.
 */
async function checkEpochs(group: JournalGroup, hello: SecondaryHello, peer: string): Promise<void> {
  const mine = group.epochs;
  const how = compareLineages(hello.epochs, mine);
  if (how === 'newer') {
    await group.fenceBy(hello.epochs, `secondary "${hello.name}" (${peer})`);
    throw new JshipError('GROUP_FENCED', `secondary "${hello.name}" follows ${lineageText(hello.epochs)}; this primary is of ${lineageText(mine)}: another site was promoted, this group is fenced and takes no more writes`, {
      hint: 'the promoted site is the primary now: point the secondaries there (docs/OPERATIONS.md, "Takeover")',
    });
  }
  if (how === 'forked') {
    throw new JshipError('LINK_DIVERGED', `secondary "${hello.name}" follows ${lineageText(hello.epochs)}; this primary is of ${lineageText(mine)}: they descend from different promotions`, {
      hint: 'only one of the promoted sites is the group\'s primary: give this replica to that one, or start a new replica here',
    });
  }
  const g = generationOf(hello.epochs);
  if (hello.lastSeq !== null && !onLineage(mine, g, BigInt(hello.lastSeq))) {
    throw new JshipError('LINK_DIVERGED', `secondary "${hello.name}" holds records of epoch ${g} up to seq ${hello.lastSeq}, but epoch ${g + 1} began at seq ${epochEnd(mine, g)} here: it holds what the old primary wrote after the takeover`, {
      hint: 'this replica cannot follow the promoted site: give it a new replica directory (a full base), and keep this one for the old primary\'s history',
    });
  }
}

/**
 * Where a secondary this primary has no record of resumes when it followed
 * an earlier epoch (its replica's lineage, or its link tape, is older than
 * this primary's: it followed the site this one was promoted from, by link
 * or by tapes): after the newest record it holds — checkEpochs made sure
 * those are on this primary's lineage. Null when it is not such a secondary.
 */
function followsFromEarlierEpoch(group: JournalGroup, hello: SecondaryHello): bigint | null {
  const mine = generationOf(group.epochs);
  const earlier = generationOf(hello.epochs) < mine || (hello.held !== null && (hello.held.epoch ?? 1) < mine);
  return earlier && hello.lastSeq !== null ? BigInt(hello.lastSeq) : null;
}

async function forgetUnconfirmed(group: JournalGroup, name: string, log: LinkLog): Promise<void> {
  const gone = await updateRegistry(group.dir, (r) => {
    const s = r.secondaries.find((x) => x.name === name);
    if (!s || s.confirmed.serial !== 0 || s.inflight !== null) return false;
    r.secondaries = r.secondaries.filter((x) => x !== s);
    return true;
  });
  if (!gone) return;
  log({ event: 'secondary-unregistered', name, why: 'its first session ended before it confirmed a tape' });
  await group.purgeSecured();
}

async function firstFrame(ch: Channel, timeoutMs: number): ReturnType<Channel['next']> {
  const f = await ch.next(timeoutMs);
  expect(f, MessageType.Hello);
  return f;
}

/** Moves a secondary's position to the tape it confirmed (the oldest in flight). */
function confirm(s: SecondaryState, t: InflightTape, seconds: number): void {
  const bytes = s.confirmed.dataEnd !== null && t.dataEnd !== null ? Number(BigInt(t.dataEnd) - BigInt(s.confirmed.dataEnd)) : 0;
  if (seconds > 0 && bytes > 0) s.rate = s.rate === 0 ? bytes / seconds : 0.7 * s.rate + 0.3 * (bytes / seconds);
  s.confirmed = { serial: t.serial, sha256: t.sha256, seq: t.seq, ts: t.ts ?? s.confirmed.ts, dataEnd: t.dataEnd ?? s.confirmed.dataEnd, at: new Date().toISOString() };
  if (t.base) s.needsBase = false;
  if (t.healed) delete s.sawSuspension;
  else if (t.suspended) s.sawSuspension = true;
  s.inflight = s.inflightNext ?? null;
  delete s.inflightNext;
}

async function current(dir: string, name: string): Promise<SecondaryState> {
  const s = (await readRegistry(dir)).secondaries.find((x) => x.name === name);
  if (!s) throw new JshipError('LINK_REFUSED', `secondary "${name}" was unregistered`, { hint: 'it connects again as a new secondary, with a new base' });
  return s;
}

/** A link tape sent and not confirmed yet, as this session knows it. */
interface Sent {
  tape: InflightTape;
  bytes: number;
  records: number;
  base: Awaited<ReturnType<typeof exportGroup>>['base'];
  started: number;
  /** Updates only (no base, resync or suspension in it): confirming it moves the position and nothing else, so the next tape may follow it at once. */
  plain: boolean;
}

/**
 * Sends link tapes (pull: each the answer to a READ), up to `window` of
 * them before the oldest is confirmed — the next goes out while the
 * secondary stores the one before — but only after plain update tapes: a
 * base, a resync or a suspension is confirmed before anything follows it.
 * `resyncFirst`: an old primary's resync (its chunks, and the id of its
 * request) goes in the first tape.
 */
async function sendLoop(ch: Channel, o: PrimaryOptions, name: string, mode: 'pull' | 'push', window: number, timeoutMs: number, resyncFirst?: { chunks: number[][]; id?: string }): Promise<void> {
  let resync = resyncFirst;
  const { group, log } = o;
  const heartbeatMs = o.heartbeatMs ?? 5000;
  const sent: Sent[] = [];
  /** Pull: the wait asked by the READ not answered yet (null: none). */
  let asked: number | null = null;
  let lastConfirmAt = 0;
  const confirmed = async (serial: number, sha256: string): Promise<void> => {
    const t = sent.shift();
    if (!t || serial !== t.tape.serial || sha256 !== t.tape.sha256) {
      throw new JshipError('LINK_POSITION', `secondary "${name}" confirmed link tape ${serial} (${sha256.slice(0, 12)}…), but ${t ? `tape ${t.tape.serial} (${t.tape.sha256.slice(0, 12)}…) was the oldest sent` : 'none was sent'}`, { hint: 'the replica stored something else than was sent; nothing is purged for it' });
    }
    // Tapes in flight overlap: each is timed from when the one before it was confirmed, if that is later.
    const now = Date.now();
    const seconds = (now - Math.max(t.started, lastConfirmAt)) / 1000;
    lastConfirmAt = now;
    const after = await updateRegistry(group.dir, (r) => {
      const x = r.secondaries.find((y) => y.name === name);
      if (x?.inflight) confirm(x, x.inflight, seconds);
      if (x) x.lastSeen = new Date().toISOString();
      return x ? { ...x } : undefined;
    });
    const journalOut = await group.purgeSecured();
    log({
      event: 'tape-confirmed', name, serial: t.tape.serial, bytes: t.bytes, records: t.records, seq: after?.confirmed.seq ?? null,
      base: t.base ? { baseId: t.base.baseId.toString(), scope: t.base.scope } : null, seconds, journalOut,
    });
  };
  /** Takes the secondary's next message: the CONFIRM of the oldest tape in flight, a READ, a STATUS_REQUEST (both pull). */
  const take = async (): Promise<void> => {
    // Import of a large tape takes time at the secondary: a confirmation is waited for longer than a message.
    const f = await ch.next(timeoutMs + (sent.length > 0 ? 600_000 : 60_000));
    if (mode === 'pull' && f.type === MessageType.StatusRequest) {
      await ch.send(message(MessageType.Status, { status: await linkStatus(group, BigInt((await current(group.dir, name)).confirmed.seq)) }));
    } else if (sent.length > 0 && f.type === MessageType.Confirm) {
      const c = decodeConfirm(f);
      await confirmed(c.serial, c.sha256);
    } else if (mode === 'pull' && asked === null && sent.length < window) {
      expect(f, MessageType.Read);
      asked = Math.min(decodeRead(f).waitMs, 60_000);
    } else {
      expect(f, MessageType.Confirm);
    }
  };
  for (;;) {
    const last = sent.at(-1);
    if ((mode === 'pull' && asked === null) || sent.length >= window || (last && !last.plain)) {
      await take();
      continue;
    }
    const s = await current(group.dir, name);
    const from = last ? BigInt(last.tape.seq) : BigInt(s.confirmed.seq);
    // With a tape in flight, records are not waited for: its confirmation is taken first.
    if (!resync && !(await recordsFor(group, s, from, last ? 0 : (asked ?? heartbeatMs), ch))) {
      if (last) {
        await take();
      } else {
        await idle(ch, group, s);
        asked = null;
      }
      continue;
    }
    const started = Date.now();
    const result = await exportNext(ch, o, s, last?.tape, log, resync);
    resync = undefined;
    asked = null;
    if (result.nothingToExport) {
      await idle(ch, group, s);
      continue;
    }
    const tape = result.tapes[0];
    if (!tape || !result.inflight) throw new JshipError('IO', 'a link export wrote no tape', { hint: 'this is a bug in jship' });
    const t = result.inflight;
    sent.push({ tape: t, bytes: tape.bytes, records: result.records, base: result.base, started, plain: !t.base && !t.healed && !t.suspended && result.base === null && !fullBaseFor(group, s) });
  }
}

async function idle(ch: Channel, group: JournalGroup, s: SecondaryState): Promise<void> {
  await ch.send(message(MessageType.Idle, { status: await linkStatus(group, BigInt(s.confirmed.seq)) }));
}

/**
 * Whether `s` needs a full base with its next tape: a new secondary, or one
 * that was sent a suspension after which the resync base went to another
 * consumer (the dirty bitmap is gone: only a full base heals it).
 */
function fullBaseFor(group: JournalGroup, s: SecondaryState): boolean {
  return s.needsBase || (s.sawSuspension === true && group.state !== 'suspended' && group.state !== 'resync-pending');
}

/**
 * Whether there is something to send to `s` after record `from` (a base, a
 * resync base, records), waiting up to `waitMs` for records — or until the
 * connection `ch` ends: a secondary that went away (or a server that stops)
 * held its session, and the server's stop, for the rest of the wait. It
 * looks again as each batch of records is written and the group's state
 * changes (it looked every 20 ms: up to that much more lag), and at least
 * every LOOK_AGAIN_MS for what the group does not announce.
 */
async function recordsFor(group: JournalGroup, s: SecondaryState, from: bigint, waitMs: number, ch: Pick<Channel, 'failed' | 'ended'>): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (fullBaseFor(group, s) || group.state === 'resync-pending' || group.journal.writtenSeq - 1n > from) return true;
    const left = deadline - Date.now();
    if (left <= 0 || ch.failed) return false;
    // Not Promise.race with a promise of the connection's end: each race would leave a reaction on it for the session's life.
    await group.nextChange(Math.min(left, LOOK_AGAIN_MS), ch.ended);
  }
}

/** The longest recordsFor waits without looking again (a base asked for elsewhere is not announced). */
const LOOK_AGAIN_MS = 250;

/** How long a link tape waits for a base someone else is taking (a tape export's, another secondary's). */
const BASE_WAIT_MS = 10 * 60_000;

/**
 * Exports the next link tape for `s`, after the tape `after` still in flight
 * if one is (else after what `s` confirmed), and records it in flight before
 * its TAPE_END goes; a base taken by someone else at the moment is waited for.
 */
async function exportNext(ch: Channel, o: PrimaryOptions, s: SecondaryState, after: InflightTape | undefined, log: LinkLog, resync?: { chunks: number[][]; id?: string }): Promise<Awaited<ReturnType<typeof exportGroup>> & { inflight?: InflightTape }> {
  const at = after ?? { serial: s.confirmed.serial, sha256: s.confirmed.sha256, seq: s.confirmed.seq };
  let inflight: InflightTape | undefined;
  const result = await exportGroup(o.group, {
    destination: o.throttle ? throttled(new LinkDestination(ch), o.throttle) : new LinkDestination(ch),
    base: !after && fullBaseFor(o.group, s),
    ...(resync ? { resyncChunks: resync.chunks, ...(resync.id !== undefined ? { resyncFor: resync.id } : {}) } : {}),
    keepUntilAck: true,
    // A base taken by someone else at the moment (a tape export's, another secondary's) is waited for.
    waitMs: BASE_WAIT_MS,
    onBaseWait: (id) => log({ event: 'waiting', name: s.name, why: id !== null ? `base ${id} is still being taken` : 'another base is being started' }),
    pool: o.pool,
    maxUpdateBytes: o.maxTapeBytes ?? DEFAULT_LINK_TAPE_BYTES,
    endUnderPressure: true,
    chain: {
      state: { ...EMPTY_CHAIN, nextSerial: at.serial + 1, lastTapeSha256: at.sha256, exportedSeq: at.seq, ackedSeq: s.confirmed.seq },
      link: { secondary: s.name },
      beforeSend: async (t, dataEnd) => {
        const u = t.trailer.updates;
        const { fullBase: base, healed, suspended } = trailerEffects(t.trailer);
        const sent: InflightTape = { serial: t.serial, sha256: t.sha256, seq: u?.lastSeq ?? at.seq, ts: u?.lastTs ?? null, dataEnd: dataEnd?.toString() ?? null, base, healed, suspended };
        await updateRegistry(o.group.dir, (r) => {
          const x = r.secondaries.find((y) => y.name === s.name);
          if (!x) return;
          if (x.inflight) x.inflightNext = sent;
          else x.inflight = sent;
        });
        inflight = sent;
      },
    },
  });
  return inflight ? { ...result, inflight } : result;
}
