import { Counter, Gauge, Registry } from 'prom-client';
import type { JshipEvent } from '../core/events.js';
import type { MetricsSource } from '../io/metrics-endpoint.js';

interface Pointers {
  readScheduledSeq?: string | null;
  readSeq?: string | null;
  restoreScheduledSeq?: string | null;
  restoredSeq?: string | null;
}

/**
 * A secondary's figures (`jship link pull|receive --metrics`), read from its
 * own events: tapes, records and bytes received, whether it is connected,
 * and the §0078-0083 pointers — what the primary has, what is stored, what
 * the SVOLs are restored to — with the apply lag between the last two.
 */
export class SecondaryMetrics implements MetricsSource {
  readonly registry = new Registry();
  readonly #tapes: Counter;
  readonly #records: Counter;
  readonly #bytes: Counter;
  readonly #disconnects: Counter;
  readonly #connected: Gauge;
  readonly #pointer: Gauge<'pointer'>;
  readonly #applyLag: Gauge;
  readonly #lastTape: Gauge;
  #read: bigint | null = null;
  #restored: bigint | null = null;

  constructor() {
    const r = [this.registry];
    this.#tapes = new Counter({ name: 'jship_link_tapes_received_total', help: 'Link tapes stored and confirmed', registers: r });
    this.#records = new Counter({ name: 'jship_link_records_received_total', help: 'Journal records in the link tapes stored', registers: r });
    this.#bytes = new Counter({ name: 'jship_link_bytes_received_total', help: 'Bytes of the link tapes stored', registers: r });
    this.#disconnects = new Counter({ name: 'jship_link_disconnects_total', help: 'Connections to the primary lost or refused', registers: r });
    this.#connected = new Gauge({ name: 'jship_link_connected', help: '1 while connected to the primary', registers: r });
    this.#pointer = new Gauge({ name: 'jship_link_sequence', help: 'Pointers: what the primary has (read_scheduled), what is stored (read), what the SVOLs are restored to (restored)', labelNames: ['pointer'], registers: r });
    this.#applyLag = new Gauge({ name: 'jship_link_apply_lag_records', help: 'Records stored and not yet applied to the SVOLs (with --apply)', registers: r });
    this.#lastTape = new Gauge({ name: 'jship_link_last_tape_time_seconds', help: 'When the last tape was stored (unix time)', registers: r });
    this.#connected.set(0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Takes in one event of the secondary (wrap its log with this). */
  observe(e: JshipEvent): void {
    switch (e.event) {
      case 'connected':
        this.#connected.set(1);
        if (typeof e.primaryLastSeq === 'string') this.#pointer.set({ pointer: 'read_scheduled' }, Number(e.primaryLastSeq));
        break;
      case 'disconnected':
      case 'unreachable':
      case 'refused':
        this.#connected.set(0);
        this.#disconnects.inc();
        break;
      case 'tape-stored':
        this.#tapes.inc();
        if (typeof e.records === 'number') this.#records.inc(e.records);
        if (typeof e.bytes === 'number') this.#bytes.inc(e.bytes);
        this.#lastTape.set(Date.now() / 1000);
        this.#pointers(e.pointers as Pointers | undefined);
        break;
      case 'applied':
        this.#pointers(e.pointers as Pointers | undefined);
        break;
      default:
    }
  }

  #pointers(p: Pointers | undefined): void {
    if (!p) return;
    const set = (name: string, v: string | null | undefined): bigint | null => {
      if (typeof v !== 'string') return null;
      this.#pointer.set({ pointer: name }, Number(v));
      return BigInt(v);
    };
    set('read_scheduled', p.readScheduledSeq);
    this.#read = set('read', p.readSeq) ?? this.#read;
    set('restore_scheduled', p.restoreScheduledSeq);
    this.#restored = set('restored', p.restoredSeq) ?? this.#restored;
    if (this.#read !== null && this.#restored !== null) this.#applyLag.set(Math.max(0, Number(this.#read - this.#restored)));
  }
}
