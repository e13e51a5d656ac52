import { join } from 'node:path';
import { JshipError } from '../core/errors.js';
import { readJsonFile, writeFileAtomic } from '../io/files.js';
import { NAME } from './messages.js';

/**
 * The link secondaries a primary feeds (GROUP_DIR/link.json), each with its
 * own position (DESIGN invariant 5): what it has confirmed (purge never goes
 * past it) and the link tapes in flight to it (at most two: the next is sent
 * while the secondary stores the one before).
 */
export interface SecondaryState {
  name: string;
  registeredAt: string;
  /** Everything up to `seq` is stored at the secondary; `serial`/`sha256` name its last link tape (0/null: none yet). */
  confirmed: { serial: number; sha256: string | null; seq: string; ts: string | null; dataEnd: string | null; at: string | null };
  /**
   * The tape sent and not confirmed yet, with what confirming it means:
   * `base`, it carries a whole full base; `healed`, a whole base completing
   * after any suspension in it; `suspended`, a suspension not healed in it.
   */
  inflight: InflightTape | null;
  /** The tape sent after `inflight`, before `inflight` was confirmed (absent: none). */
  inflightNext?: InflightTape;
  /** A new secondary (or one whose replica lost a resync) gets a full base with its next tape. */
  needsBase: boolean;
  /**
   * It was sent a suspension and no base after it yet: if the group's resync
   * base goes to another consumer, this one gets a full base instead.
   */
  sawSuspension?: boolean;
  lastSeen: string | null;
  address: string | null;
  /** Confirmed journal bytes per second, smoothed (for the catch-up estimate). */
  rate: number;
  /**
   * Set when push failover (or a failback) moved away from this secondary:
   * it still pins the journal, so that a short outage loses no restore
   * point, until the journal is nearly full — then it is released
   * (`detached`). Cleared when it connects again.
   */
  standby?: boolean;
  /**
   * A standby released when the journal filled: it no longer pins the
   * journal. When it connects again it resumes from its own position, with
   * a new base if the records after it were purged meanwhile.
   */
  detached?: boolean;
}

export interface InflightTape {
  serial: number;
  sha256: string;
  seq: string;
  ts: string | null;
  dataEnd: string | null;
  base: boolean;
  healed?: boolean;
  suspended?: boolean;
}

export interface LinkRegistry {
  format: 1;
  secondaries: SecondaryState[];
}

export function registryPath(groupDir: string): string {
  return join(groupDir, 'link.json');
}

export async function readRegistry(groupDir: string): Promise<LinkRegistry> {
  return readJsonFile(registryPath(groupDir), (): LinkRegistry => ({ format: 1, secondaries: [] }), (x) => {
    const v = x as LinkRegistry;
    if (v.format !== 1 || !Array.isArray(v.secondaries)) throw new Error('malformed');
    for (const s of v.secondaries) {
      if (typeof s.name !== 'string' || !NAME.test(s.name) || !/^\d+$/.test(s.confirmed?.seq ?? '') || !Number.isSafeInteger(s.confirmed.serial)) throw new Error(`secondary entry ${JSON.stringify(s.name)} is malformed`);
    }
    return v;
  }, (why) => new JshipError('LINK_REGISTRY_DAMAGED', `${registryPath(groupDir)} is damaged (${why})`, {
    hint: 'it records what each link secondary has confirmed; restore it from a backup, or remove it and give each secondary a new base (a new replica)',
  }));
}

const queues = new Map<string, Promise<unknown>>();

/**
 * Reads, changes and writes the registry, one change at a time per group in
 * this process (the owner is the only writer). `change` returns the result.
 */
export function updateRegistry<T>(groupDir: string, change: (r: LinkRegistry) => T): Promise<T> {
  const prev = queues.get(groupDir) ?? Promise.resolve();
  const run = prev.catch(() => undefined).then(async () => {
    const r = await readRegistry(groupDir);
    const out = change(r);
    await writeFileAtomic(registryPath(groupDir), `${JSON.stringify(r, null, 2)}\n`);
    return out;
  });
  queues.set(groupDir, run);
  void run.finally(() => {
    if (queues.get(groupDir) === run) queues.delete(groupDir);
  }).catch(() => undefined);
  return run;
}

/** A new secondary, pinned at `seq` (the last record written): it gets a base, then every record after. */
export function newSecondary(name: string, seq: bigint, address: string | null): SecondaryState {
  return {
    name, registeredAt: new Date().toISOString(),
    confirmed: { serial: 0, sha256: null, seq: seq.toString(), ts: null, dataEnd: null, at: null },
    inflight: null, needsBase: true, lastSeen: new Date().toISOString(), address, rate: 0,
  };
}

/** The smallest position the attached secondaries have confirmed (null: none). */
export function slowestConfirmed(r: LinkRegistry): bigint | null {
  let min: bigint | null = null;
  for (const s of r.secondaries) {
    if (s.detached) continue;
    const c = BigInt(s.confirmed.seq);
    if (min === null || c < min) min = c;
  }
  return min;
}
