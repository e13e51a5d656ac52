import type { GroupStatus } from '../journal/group-status.js';
import type { LinkRegistry } from './registry.js';

export interface SecondaryLag {
  name: string;
  address: string | null;
  confirmedSeq: string;
  /** Records written and not yet confirmed. */
  records: string;
  /** Journal bytes of those records (null until a first tape is confirmed). */
  bytes: number | null;
  /** Time between the last record written and the last confirmed. */
  seconds: number | null;
  /** Catch-up estimate at the rate confirmed so far (null: no rate yet, or caught up). */
  etaSeconds: number | null;
  lastSeen: string | null;
  needsBase: boolean;
  /** Left behind by a push failover or failback: it still pins the journal until the journal is nearly full. */
  standby: boolean;
  /** A standby released when the journal filled: it does not pin the journal. */
  detached: boolean;
}

/** Each link secondary's lag behind the primary, from the group's status and the registry (pure). */
export function secondaryLag(s: GroupStatus, r: LinkRegistry): SecondaryLag[] {
  const last = s.sequence.last ?? s.journal.in.seq - 1n;
  return r.secondaries.map((x) => {
    const confirmed = BigInt(x.confirmed.seq);
    const records = last > confirmed ? last - confirmed : 0n;
    const bytes = x.confirmed.dataEnd !== null ? Math.max(0, Number(s.journal.in.dataPos - BigInt(x.confirmed.dataEnd))) : null;
    const seconds = records === 0n ? 0 : x.confirmed.ts !== null && s.time.last !== null ? Math.max(0, Number(s.time.last - BigInt(x.confirmed.ts)) / 1e9) : null;
    const etaSeconds = records === 0n ? 0 : bytes !== null && x.rate > 0 ? bytes / x.rate : null;
    return {
      name: x.name, address: x.address, confirmedSeq: x.confirmed.seq, records: records.toString(), bytes, seconds, etaSeconds,
      lastSeen: x.lastSeen, needsBase: x.needsBase, standby: x.standby === true, detached: x.detached === true,
    };
  });
}
