/**
 * Write and purge rates of a journal over the last minute and the last 15
 * minutes, and the forecasts made from them (pure: times and counters are
 * passed in). Counters are cumulative since the group was opened; a sample is
 * kept at most every `intervalNs`, for as long as the longest window.
 */

/** Cumulative counts since the group was opened. */
export interface JournalCounters {
  records: bigint;
  bytes: bigint;
  purgedRecords: bigint;
  purgedBytes: bigint;
}

export interface JournalRate {
  /** The time the rate is measured over (shorter than asked while the group has been open for less). */
  seconds: number;
  recordsPerSecond: number;
  bytesPerSecond: number;
  purgedRecordsPerSecond: number;
  purgedBytesPerSecond: number;
}

interface Sample {
  at: bigint;
  c: JournalCounters;
}

export const MINUTE_NS = 60_000_000_000n;

export class RateWindow {
  readonly #samples: Sample[] = [];
  readonly #intervalNs: bigint;
  readonly #keepNs: bigint;

  constructor(start: bigint, c: JournalCounters, intervalNs = 5_000_000_000n, keepNs = 15n * MINUTE_NS) {
    this.#intervalNs = intervalNs;
    this.#keepNs = keepNs;
    this.#samples.push({ at: start, c: { ...c } });
  }

  /** Whether `note` would keep a sample now (callers on a hot path ask before gathering counters). */
  due(now: bigint): boolean {
    return now - (this.#samples[this.#samples.length - 1] as Sample).at >= this.#intervalNs;
  }

  /** Keeps a sample if the last one is at least an interval old; drops samples older than the longest window needs. */
  note(now: bigint, c: JournalCounters): void {
    if (!this.due(now)) return;
    this.#samples.push({ at: now, c: { ...c } });
    // Keep one sample at or before now - keep: the base of the longest window.
    while (this.#samples.length > 2 && (this.#samples[1] as Sample).at <= now - this.#keepNs) this.#samples.shift();
  }

  /** The rate over the last `windowNs` (or since the oldest sample, if younger); null before a second has passed. */
  rate(now: bigint, c: JournalCounters, windowNs: bigint): JournalRate | null {
    let base = this.#samples[0] as Sample;
    for (const s of this.#samples) {
      if (s.at <= now - windowNs) base = s;
      else break;
    }
    const ns = now - base.at;
    if (ns < 1_000_000_000n) return null;
    const seconds = Number(ns) / 1e9;
    const per = (a: bigint, b: bigint): number => Number(a - b) / seconds;
    return {
      seconds,
      recordsPerSecond: per(c.records, base.c.records),
      bytesPerSecond: per(c.bytes, base.c.bytes),
      purgedRecordsPerSecond: per(c.purgedRecords, base.c.purgedRecords),
      purgedBytesPerSecond: per(c.purgedBytes, base.c.purgedBytes),
    };
  }
}

/** What fills a journal: record slots and data bytes, used and in all. */
export interface JournalSpace {
  records: bigint;
  metaSlots: number;
  bytes: bigint;
  dataSize: number;
}

export interface JournalForecast {
  /** At the rate measured, with consumers purging as they did: seconds until full (null: not filling). */
  fullInSeconds: number | null;
  /** If every consumer stopped now (nothing purged), seconds until full at the write rate (null: nothing written). */
  lastsSeconds: number | null;
}

/** Seconds until the first of slots or data runs out at the given net rates (null when neither grows). */
function until(space: JournalSpace, recordsPerSecond: number, bytesPerSecond: number): number | null {
  const slots = recordsPerSecond > 0 ? (space.metaSlots - Number(space.records)) / recordsPerSecond : Infinity;
  const data = bytesPerSecond > 0 ? (space.dataSize - Number(space.bytes)) / bytesPerSecond : Infinity;
  const t = Math.min(slots, data);
  return Number.isFinite(t) ? Math.max(0, t) : null;
}

export function forecast(space: JournalSpace, rate: JournalRate | null): JournalForecast {
  if (!rate) return { fullInSeconds: null, lastsSeconds: null };
  return {
    fullInSeconds: until(space, rate.recordsPerSecond - rate.purgedRecordsPerSecond, rate.bytesPerSecond - rate.purgedBytesPerSecond),
    lastsSeconds: until(space, rate.recordsPerSecond, rate.bytesPerSecond),
  };
}
