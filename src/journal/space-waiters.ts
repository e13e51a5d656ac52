import { JshipError } from '../core/errors.js';
import type { EventLog } from '../core/events.js';

interface SpaceWaiter {
  count: number;
  bytes: number;
  resolve: () => void;
}

/** What the writers waiting for journal space need to know of their group. */
export interface SpaceHooks {
  /** The group's directory (for messages). */
  dir: string;
  /** How long a writer waits before it fails with JOURNAL_FULL (policy `block`). */
  timeoutMs: number;
  /** Whether `count` records of `bytes` data fit in the journal now (without the marker reserve). */
  fits(count: number, bytes: number): boolean;
  /** Throws when the group cannot take the write any more (closed, failed). */
  check(): void;
  /** A writer began to wait or gave up: the group's state may have changed. */
  changed(): void;
  /** The journal's usage, for events and messages. */
  usage(): string;
  onEvent: EventLog | undefined;
}

/**
 * Writers waiting for journal space under the `block` policy, served in
 * the order they came (a waiter that was woken and still does not fit goes
 * back to the front), each with its deadline. A purge wakes as many as now
 * fit, together.
 */
export class SpaceWaiters {
  readonly #hooks: SpaceHooks;
  readonly #waiters: SpaceWaiter[] = [];
  #closing = false;

  constructor(hooks: SpaceHooks) {
    this.#hooks = hooks;
  }

  /** How many writers wait. */
  get length(): number {
    return this.#waiters.length;
  }

  /** Waits until `count` records of `bytes` data fit and every writer before this one was served; JOURNAL_FULL after the deadline. */
  async wait(count: number, bytes: number): Promise<void> {
    const h = this.#hooks;
    const deadline = Date.now() + h.timeoutMs;
    let front = false;
    while (front ? !h.fits(count, bytes) : this.#waiters.length > 0 || !h.fits(count, bytes)) {
      if (this.#closing) {
        throw new JshipError('GROUP_CLOSED', `group ${h.dir} is closing: a write waiting for journal space was not journaled`, { hint: 'write it again once the group is open again' });
      }
      const left = deadline - Date.now();
      const waited = await new Promise<boolean>((resolveWait) => {
        const w: SpaceWaiter = {
          count,
          bytes,
          resolve: () => {
            clearTimeout(timer);
            resolveWait(true);
          },
        };
        if (front) this.#waiters.unshift(w);
        else this.#waiters.push(w);
        h.changed();
        if (!front) h.onEvent?.({ event: 'writer-blocked', records: count, bytes, waiting: this.#waiters.length, usage: h.usage(), timeoutMs: h.timeoutMs });
        const timer = setTimeout(() => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) {
            this.#waiters.splice(i, 1);
            resolveWait(false);
          }
        }, Math.max(0, left));
      });
      if (!waited) {
        this.wake();
        h.onEvent?.({ event: 'writer-failed', error: 'JOURNAL_FULL', usage: h.usage(), waitedMs: h.timeoutMs });
        h.changed();
        throw new JshipError('JOURNAL_FULL', `the journal is full (${h.usage()}) and no space was freed within ${h.timeoutMs} ms`, {
          hint: 'export the journal so that it can be purged (jship export), or re-create the group with a larger --journal-size',
        });
      }
      h.check();
      front = true;
    }
  }

  /** Wakes the writers at the front that fit now, together. */
  wake(): void {
    let count = 0;
    let bytes = 0;
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0] as SpaceWaiter;
      if (!this.#hooks.fits(count + w.count, bytes + w.bytes)) break;
      count += w.count;
      bytes += w.bytes;
      this.#waiters.shift();
      w.resolve();
    }
  }

  /** From now on a writer that would have to wait fails with GROUP_CLOSED. */
  stop(): void {
    this.#closing = true;
  }

  /** Wakes every waiting writer: each checks the group again (and fails once it is stopped or closed). */
  releaseAll(): void {
    for (const w of this.#waiters.splice(0)) w.resolve();
  }
}
