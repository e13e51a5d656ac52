import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsSource } from '../io/metrics-endpoint.js';
import type { JournalGroup } from '../journal/journal-group.js';
import type { NbdServer } from '../nbd/server.js';
import type { LinkPrimary } from '../link/link-primary.js';
import { siteStatus } from './site-status.js';

const STATES = ['active', 'nearly-full', 'full', 'suspended', 'resync-pending'] as const;

/**
 * The owner's figures in the Prometheus text format (prom-client): journal
 * usage and state, what was journaled and purged, each consumer's lag and
 * RPO, exports, NBD clients and request latency. Gauges are read from the
 * group at each scrape; counters of events are counted as they happen.
 */
export class SiteMetrics implements MetricsSource {
  readonly registry = new Registry();
  readonly #exports: Counter<'result'>;
  readonly #exportBytes: Counter;
  readonly #exportSeconds: Histogram;
  readonly #requests: Histogram<'op'>;
  readonly #refresh: () => Promise<void>;

  /** `link`: the owner's link primary once started (null: none). */
  constructor(group: JournalGroup, nbd: NbdServer | null, link: () => LinkPrimary | null = () => null) {
    const r = this.registry;
    const g = (name: string, help: string, labelNames: string[] = []): Gauge<string> => new Gauge({ name, help, labelNames, registers: [r] });
    const usage = g('jship_journal_usage_ratio', 'Journal usage, 0..1, of record slots and of data bytes', ['ring']);
    const size = g('jship_journal_capacity', 'Journal capacity: record slots and data bytes', ['ring']);
    const held = g('jship_journal_held', 'Records and data bytes held in the journal', ['unit']);
    const state = g('jship_journal_state', 'Journal state: 1 for the current one', ['state']);
    const seq = g('jship_journal_sequence', 'Journal pointers: out (oldest held), in (next), applied', ['pointer']);
    // Counters of what only grows, advanced to the group's own figures at each scrape.
    const seen = new Map<string, number>();
    const counterOf = (name: string, help: string, labelNames: string[] = []): ((labels: Record<string, string>, total: number) => void) => {
      const counter = new Counter({ name, help, labelNames, registers: [r] });
      return (labels, total) => {
        const key = `${name}${JSON.stringify(labels)}`;
        const before = seen.get(key);
        // The first scrape starts from the figure as it is: since the journal was made, or serve started.
        const delta = total - (before ?? 0);
        if (delta > 0) counter.inc(labels, delta);
        seen.set(key, Math.max(total, before ?? 0));
      };
    };
    const journaled = counterOf('jship_journal_written_total', 'Records and data bytes journaled since the journal was made', ['unit']);
    const purged = counterOf('jship_journal_purged_total', 'Records and data bytes purged since the journal was made', ['unit']);
    const fullIn = g('jship_journal_full_in_seconds', 'Seconds until the journal is full at the last 15 minutes\' net rate (absent: not filling)');
    const writeRate = g('jship_journal_write_bytes_per_second', 'Journal write rate over the last minute and 15 minutes', ['window']);
    const lagRecords = g('jship_consumer_lag_records', 'Records written that the consumer has not secured', ['consumer']);
    const lagBytes = g('jship_consumer_lag_bytes', 'Journal bytes of those records', ['consumer']);
    const pvolBehind = g('jship_pvol_behind_bytes', 'Data bytes journaled since the last checkpoint (what recovery would write to the PVOLs again), and bytes replied to whose PVOL writes are still in memory', ['state']);
    const rpo = g('jship_consumer_rpo_seconds', 'Age of the oldest write the consumer lacks (0: it holds everything)', ['consumer']);
    const secured = g('jship_consumer_secured_sequence', 'Last sequence number the consumer secured', ['consumer']);
    const clients = g('jship_nbd_clients', 'NBD clients connected');
    const linkSessions = g('jship_link_sessions', 'Direct-link sessions running (pulling secondaries, the push connection)');
    const nbdBytes = counterOf('jship_nbd_bytes_total', 'Bytes read and written by NBD clients since serve started', ['direction']);
    const nbdErrors = counterOf('jship_nbd_errors_total', 'Requests answered with an error since serve started');
    this.#exports = new Counter({ name: 'jship_exports_total', help: 'Exports run by this owner, by result', labelNames: ['result'], registers: [r] });
    this.#exportBytes = new Counter({ name: 'jship_export_bytes_total', help: 'Tape bytes written by exports', registers: [r] });
    this.#exportSeconds = new Histogram({ name: 'jship_export_duration_seconds', help: 'Duration of exports', buckets: [1, 5, 15, 60, 300, 900, 3600, 14400], registers: [r] });
    this.#requests = new Histogram({
      name: 'jship_nbd_request_duration_seconds', help: 'NBD requests from read to reply, by command', labelNames: ['op'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers: [r],
    });
    nbd?.observe((op, seconds) => this.#requests.observe({ op }, seconds));
    // The gauges are read from the group once per scrape (render).
    this.#refresh = async () => {
      const site = await siteStatus(group);
      const s = site.status;
      const j = s.journal;
      usage.set({ ring: 'slots' }, j.usagePercent.metadata / 100);
      usage.set({ ring: 'data' }, j.usagePercent.data / 100);
      size.set({ ring: 'slots' }, j.metaSlots);
      size.set({ ring: 'data' }, j.dataSize);
      held.set({ unit: 'records' }, Number(j.records));
      held.set({ unit: 'bytes' }, Number(j.bytes));
      for (const st of STATES) state.set({ state: st }, s.state === st ? 1 : 0);
      seq.set({ pointer: 'out' }, Number(j.out.seq));
      seq.set({ pointer: 'in' }, Number(j.in.seq));
      seq.set({ pointer: 'applied' }, Number(j.appliedSeq));
      pvolBehind.set({ state: 'unsynced' }, j.pvolBehind.bytes);
      pvolBehind.set({ state: 'unwritten' }, j.pvolBehind.unwrittenBytes);
      journaled({ unit: 'records' }, Number(j.in.seq - 1n));
      journaled({ unit: 'bytes' }, Number(j.in.dataPos));
      purged({ unit: 'records' }, Number(j.out.seq - 1n));
      purged({ unit: 'bytes' }, Number(j.out.dataPos));
      fullIn.reset();
      const f = s.rates.forecast.fifteenMinutes.fullInSeconds;
      if (f !== null) fullIn.set(f);
      writeRate.reset();
      if (s.rates.oneMinute) writeRate.set({ window: '1m' }, s.rates.oneMinute.bytesPerSecond);
      if (s.rates.fifteenMinutes) writeRate.set({ window: '15m' }, s.rates.fifteenMinutes.bytesPerSecond);
      for (const m of [lagRecords, lagBytes, rpo, secured]) m.reset();
      for (const c of site.consumers) {
        const consumer = c.kind === 'tapes' ? 'tapes' : `secondary/${c.name}`;
        lagRecords.set({ consumer }, Number(c.behind.records));
        secured.set({ consumer }, Number(c.securedSeq));
        if (c.behind.bytes !== null) lagBytes.set({ consumer }, c.behind.bytes);
        if (c.rpoSeconds !== null) rpo.set({ consumer }, c.rpoSeconds);
      }
      linkSessions.set(link()?.sessions ?? 0);
      if (nbd) {
        const n = nbd.stats();
        clients.set(n.connections.length);
        nbdBytes({ direction: 'read' }, n.totals.bytesRead);
        nbdBytes({ direction: 'written' }, n.totals.bytesWritten);
        nbdErrors({}, n.totals.errors);
      }
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text, the gauges read from the group now. */
  async render(): Promise<string> {
    await this.#refresh();
    return this.registry.metrics();
  }

  /** Counts an export of this owner (its tape bytes and duration, or a failure). */
  async countExport<T extends { tapeBytes?: number }>(run: () => Promise<T>): Promise<T> {
    const end = this.#exportSeconds.startTimer();
    try {
      const r = await run();
      this.#exports.inc({ result: 'ok' });
      this.#exportBytes.inc(r.tapeBytes ?? 0);
      return r;
    } catch (e) {
      this.#exports.inc({ result: 'failed' });
      throw e;
    } finally {
      end();
    }
  }
}

