import type { GroupStatus } from '../journal/group-status.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { secondaryLag, type SecondaryLag } from '../link/lag.js';
import { readRegistry, type LinkRegistry } from '../link/registry.js';
import { readChainState, securedSeq, type ChainState } from '../tape/chain-state.js';

/**
 * How far behind one consumer of the journal is (the tape chain, a link
 * secondary): what it has secured, how old that is, what it has not, and the
 * RPO — the writes that would be lost if the primary were lost now.
 */
export interface ConsumerLag {
  kind: 'tapes' | 'secondary';
  name: string;
  securedSeq: string;
  /** Timestamp (ns) of the newest record it secured (null: unknown, or nothing secured yet). */
  securedTs: bigint | null;
  /** Seconds since that record was written. */
  ageSeconds: number | null;
  /** Records written and not secured, and their journal bytes (null: not known, the records are purged). */
  behind: { records: string; bytes: number | null };
  /** 0 when it holds everything; else seconds since the oldest write it does not hold (null: not known). */
  rpoSeconds: number | null;
  /** Whether it keeps records in the journal (a detached secondary or a chain without a tape does not). */
  pins: boolean;
  /** What else an operator should know (tapes awaiting an ack, a base needed, detached). */
  note: string | null;
}

/** Why journal-out is where it is. */
export interface HeldBy {
  consumer: string | null;
  seq: string | null;
  why: string;
}

/** What `jship status` shows of a site: the group, every consumer's lag and RPO, and what holds the journal. */
export interface SiteStatus {
  status: GroupStatus;
  tapes: { nextSerial: number; exportedSeq: string; securedSeq: string; awaitingAck: number[] };
  link: SecondaryLag[];
  consumers: ConsumerLag[];
  heldBy: HeldBy;
}

const seconds = (ns: bigint): number => Math.max(0, Number(ns) / 1e9);

export async function siteStatus(group: JournalGroup): Promise<SiteStatus> {
  const status = await group.status();
  const chain = await readChainState(group.dir);
  const registry = await readRegistry(group.dir);
  const consumers = [await tapeLag(group, status, chain), ...(await Promise.all(registry.secondaries.map((s) => secondaryRpo(group, status, s))))];
  return {
    status,
    tapes: { nextSerial: chain.nextSerial, exportedSeq: chain.exportedSeq, securedSeq: securedSeq(chain).toString(), awaitingAck: chain.pendingAcks.map((p) => p.serial) },
    link: secondaryLag(status, registry),
    consumers,
    heldBy: heldBy(status, consumers),
  };
}

async function lag(group: JournalGroup, s: GroupStatus, base: Omit<ConsumerLag, 'ageSeconds' | 'behind' | 'rpoSeconds'>): Promise<ConsumerLag> {
  const last = s.sequence.last ?? 0n;
  const secured = BigInt(base.securedSeq);
  const records = last > secured ? last - secured : 0n;
  const at = base.securedTs;
  const ageSeconds = at === null ? null : seconds(s.now - at);
  if (records === 0n) return { ...base, ageSeconds, behind: { records: '0', bytes: 0 }, rpoSeconds: 0 };
  // The oldest record it lacks is in the journal unless it stopped pinning it (detached).
  const first = await group.header(secured + 1n);
  return {
    ...base,
    ageSeconds,
    behind: { records: records.toString(), bytes: first ? Number(s.journal.in.dataPos - first.dataPos) : null },
    rpoSeconds: first ? seconds(s.now - first.timestamp) : ageSeconds,
  };
}

async function tapeLag(group: JournalGroup, s: GroupStatus, chain: ChainState): Promise<ConsumerLag> {
  const secured = securedSeq(chain);
  const atNs = secured === BigInt(chain.exportedSeq) && chain.exportedTs !== undefined ? BigInt(chain.exportedTs) : (await group.header(secured))?.timestamp ?? null;
  const pending = chain.pendingAcks.map((p) => p.serial);
  const pins = chain.nextSerial > 1 || chain.committing !== null;
  return lag(group, s, {
    kind: 'tapes',
    name: 'tapes',
    securedSeq: secured.toString(),
    securedTs: atNs,
    pins,
    note: !pins ? 'no tape exported yet' : pending.length > 0 ? `tape${pending.length > 1 ? 's' : ''} ${pending.join(', ')} await${pending.length > 1 ? '' : 's'} an acknowledgement` : null,
  });
}

async function secondaryRpo(group: JournalGroup, s: GroupStatus, x: LinkRegistry['secondaries'][number]): Promise<ConsumerLag> {
  const atNs = x.confirmed.ts === null ? null : BigInt(x.confirmed.ts);
  const notes = [
    ...(x.detached ? ['released after a failover (the journal filled): it does not hold the journal'] : []),
    ...(x.standby && !x.detached ? ['standby after a failover: it holds the journal until the journal is nearly full'] : []),
    ...(x.needsBase ? ['needs a base'] : []),
    ...(x.inflight ? [x.inflightNext ? `link tapes ${x.inflight.serial} and ${x.inflightNext.serial} await their confirmation` : `link tape ${x.inflight.serial} awaits its confirmation`] : []),
  ];
  return lag(group, s, {
    kind: 'secondary',
    name: x.name,
    securedSeq: x.confirmed.seq,
    securedTs: atNs,
    pins: x.detached !== true,
    note: notes.length ? notes.join('; ') : null,
  });
}

/** The consumer whose position journal-out follows, in words (pure). */
export function heldBy(s: GroupStatus, consumers: readonly ConsumerLag[]): HeldBy {
  const suspended = s.state === 'suspended' || s.state === 'resync-pending'
    ? `; the group is ${s.state}: writes are tracked in the dirty bitmap until a resync base is exported` : '';
  const pinning = consumers.filter((c) => c.pins);
  if (pinning.length === 0) {
    return { consumer: null, seq: null, why: `nothing purges the journal: no tape exported and no link secondary attached${suspended}` };
  }
  const slowest = pinning.reduce((a, b) => (BigInt(b.securedSeq) < BigInt(a.securedSeq) ? b : a));
  const who = slowest.kind === 'tapes' ? 'the tape chain' : `secondary ${slowest.name}`;
  return {
    consumer: slowest.name,
    seq: slowest.securedSeq,
    why: `held for ${who} at seq ${slowest.securedSeq}${slowest.note ? `; ${slowest.note}` : ''}${suspended}`,
  };
}
