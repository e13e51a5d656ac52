import type { GroupConfig } from '../core/group-config.js';
import { epochStart, generationOf, type Lineage } from '../core/epoch.js';
import { MINUTE_NS, RateWindow, forecast, type JournalCounters, type JournalForecast, type JournalRate } from '../core/journal-rates.js';
import type { Volume } from '../volume/volume.js';
import type { BaseRun, BaseScope } from './base-reader.js';
import type { DirtyBitmap } from './dirty-bitmap.js';
import type { Fence, OutsideChange } from './group-files.js';
import type { JournalVolume } from './journal-volume.js';

export type GroupState = 'active' | 'nearly-full' | 'full' | 'suspended' | 'resync-pending';

export interface GroupStatus {
  dir: string;
  groupId: string;
  state: GroupState;
  policy: GroupConfig['policy'];
  journal: {
    path: string;
    size: number;
    metaSlots: number;
    dataSize: number;
    /** journal-out (§0074): oldest unpurged record. */
    out: { seq: bigint; dataPos: bigint };
    /** journal-in (§0075): where the next record goes. */
    in: { seq: bigint; dataPos: bigint };
    records: bigint;
    bytes: bigint;
    usagePercent: { metadata: number; data: number };
    appliedSeq: bigint;
    /**
     * How far the PVOLs are behind the journal: records after the applied
     * pointer and their data bytes (what recovery would write again), and
     * bytes replied to whose PVOL writes are still in memory.
     */
    pvolBehind: { records: bigint; bytes: number; unwrittenBytes: number };
  };
  sequence: { first: bigint | null; last: bigint | null };
  time: { first: bigint | null; last: bigint | null };
  volumes: Array<{
    name: string;
    index: number;
    size: number;
    extents: Array<{ path: string; start: number; size: number; blockDevice: boolean }>;
    records: number;
    bytes: number;
  }>;
  dirty: { chunks: number; bytes: number; chunkSize: number } | null;
  waitingWriters: number;
  base: { baseId: bigint; scope: BaseScope } | null;
  markers: number;
  /** The group's epoch: its generation and where it began (seq 1 for generation 1). */
  epoch: { generation: number; startSeq: bigint };
  /** Set when the group learned of a newer epoch of itself (it takes no writes). */
  fenced: Fence | null;
  /** Volumes whose files changed outside jship (found at an open, or at a look while open): the journal lacks those changes until a scan or a full base. */
  outside: OutsideChange | null;
  /** The group's clock when the status was taken (ns since the epoch). */
  now: bigint;
  /** Journal write and purge rates, and when the journal would be full at them. */
  rates: {
    oneMinute: JournalRate | null;
    fifteenMinutes: JournalRate | null;
    forecast: { oneMinute: JournalForecast; fifteenMinutes: JournalForecast };
  };
}

/**
 * The group's state from its facts: suspended, waiting for a resync base,
 * full (writers wait or not even one byte fits), nearly full (past the
 * policy's threshold), else active.
 */
export function stateOf(g: { suspended: boolean; resyncPending: boolean; waitingWriters: number; journal: JournalVolume; nearlyFullPercent: number }): GroupState {
  if (g.suspended) return 'suspended';
  if (g.resyncPending) return 'resync-pending';
  if (g.waitingWriters > 0 || !g.journal.fits(1, 1, false)) return 'full';
  const u = g.journal.usage();
  if (Math.max(u.metaFraction, u.dataFraction) * 100 >= g.nearlyFullPercent) return 'nearly-full';
  return 'active';
}

/**
 * The event a change of state is told as: journal-resumed (suspended →
 * resync-pending), journal-resync-complete (resync-pending → anything but
 * suspended), else journal-STATE.
 */
export function stateEvent(was: GroupState, now: GroupState): string {
  if (was === 'suspended' && now === 'resync-pending') return 'journal-resumed';
  if (was === 'resync-pending' && now !== 'suspended') return 'journal-resync-complete';
  return `journal-${now}`;
}

/** The journal's usage in words, for events and messages. */
export function usageText(journal: JournalVolume): string {
  const u = journal.usage();
  return `${u.records} records, ${(u.metaFraction * 100).toFixed(1)}% of slots, ${(u.dataFraction * 100).toFixed(1)}% of data`;
}

/** Journal positions only grow: their differences are what was written and purged. */
function counters(j: JournalVolume): JournalCounters {
  return { records: j.allocSeq, bytes: j.allocPos, purgedRecords: j.outSeq, purgedBytes: j.outDataPos };
}

/** The journal's write and purge rates over the last minute and fifteen, sampled as records are given out. */
export class GroupRates {
  readonly #journal: JournalVolume;
  readonly #mono: () => bigint;
  readonly #window: RateWindow;

  constructor(journal: JournalVolume, mono: () => bigint) {
    this.#journal = journal;
    this.#mono = mono;
    this.#window = new RateWindow(mono(), counters(journal));
  }

  /** Per record: a clock read; the counters only when a sample is due (every 5 s). */
  tick(): void {
    const now = this.#mono();
    if (this.#window.due(now)) this.#window.note(now, counters(this.#journal));
  }

  /** The rates now, and when the journal would be full at them. */
  report(): GroupStatus['rates'] {
    const now = this.#mono();
    const j = this.#journal;
    const c = counters(j);
    this.#window.note(now, c);
    const oneMinute = this.#window.rate(now, c, MINUTE_NS);
    const fifteenMinutes = this.#window.rate(now, c, 15n * MINUTE_NS);
    const u = j.usage();
    const space = { records: u.records, bytes: u.bytes, metaSlots: j.layout.metaSlots, dataSize: j.layout.dataSize };
    return { oneMinute, fifteenMinutes, forecast: { oneMinute: forecast(space, oneMinute), fifteenMinutes: forecast(space, fifteenMinutes) } };
  }
}

/** What a group's status is made of (the group hands in its own parts). */
export interface StatusParts extends Pick<GroupStatus, 'dir' | 'state' | 'waitingWriters' | 'markers'> {
  config: GroupConfig;
  journal: JournalVolume;
  /** Data bytes journaled since the last checkpoint, and bytes replied to whose PVOL writes are still in memory. */
  pvol: { sinceCheckpoint: number; unwritten: number };
  /** The clock's last timestamp given out, and its reading now. */
  clock: { last: bigint; now: bigint };
  volumes: readonly Volume[];
  perVolume: ReadonlyArray<{ records: number; bytes: number }>;
  bitmap: DirtyBitmap | undefined;
  base: BaseRun | undefined;
  epochs: Lineage;
  fence: Fence | null;
  outside: OutsideChange | null;
  rates: GroupRates;
}

/** The group's status (`jship status`, the control socket, metrics). Reads one record header (the oldest's timestamp). */
export async function groupStatus(p: StatusParts): Promise<GroupStatus> {
  const j = p.journal;
  const u = j.usage();
  const hasRecords = j.writtenSeq > j.outSeq;
  let firstTs: bigint | null = null;
  if (hasRecords) {
    const raw = await j.readHeaders(j.outSeq, 1);
    firstTs = raw.readBigUInt64LE(16);
  }
  const round = (f: number): number => Math.round(f * 10000) / 100;
  const generation = generationOf(p.epochs);
  return {
    dir: p.dir,
    groupId: p.config.groupId,
    state: p.state,
    policy: p.config.policy,
    journal: {
      path: j.path,
      size: j.layout.journalSize,
      metaSlots: j.layout.metaSlots,
      dataSize: j.layout.dataSize,
      out: { seq: j.outSeq, dataPos: j.outDataPos },
      in: { seq: j.allocSeq, dataPos: j.allocPos },
      records: u.records,
      bytes: u.bytes,
      usagePercent: { metadata: round(u.metaFraction), data: round(u.dataFraction) },
      appliedSeq: j.appliedSeq,
      pvolBehind: { records: j.allocSeq - 1n - j.appliedSeq, bytes: p.pvol.sinceCheckpoint, unwrittenBytes: p.pvol.unwritten },
    },
    sequence: { first: hasRecords ? j.outSeq : null, last: j.allocSeq > 1n ? j.allocSeq - 1n : null },
    time: { first: firstTs, last: p.clock.last > 0n ? p.clock.last : null },
    volumes: p.volumes.map((v, i) => ({
      name: v.name,
      index: i,
      size: v.size,
      extents: v.extents.map((e) => ({ ...e })),
      records: p.perVolume[i]?.records ?? 0,
      bytes: p.perVolume[i]?.bytes ?? 0,
    })),
    dirty: p.bitmap ? { chunks: p.bitmap.dirtyCount(), bytes: p.bitmap.dirtyCount() * p.bitmap.chunkSize, chunkSize: p.bitmap.chunkSize } : null,
    waitingWriters: p.waitingWriters,
    base: p.base ? { baseId: p.base.baseId, scope: p.base.scope } : null,
    markers: p.markers,
    epoch: { generation, startSeq: epochStart(p.epochs, generation) },
    fenced: p.fence,
    outside: p.outside,
    now: p.clock.now,
    rates: p.rates.report(),
  };
}
