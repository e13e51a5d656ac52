import { deferred } from '../core/deferred.js';
import type { EncodedRecord, JournalVolume } from './journal-volume.js';

const MAX_BATCH_RECORDS = 4096;
const MAX_BATCH_BYTES = 64 * 1024 * 1024;

interface Batch {
  records: EncodedRecord[];
  bytes: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit: records given out while a batch is being written wait in
 * the next batch and go to the journal together (one write of headers and
 * data side by side), batches one after another in sequence order. A
 * record's promise resolves when its batch is written (not yet durable:
 * that is the flush's fdatasync). After a failed write every later batch
 * fails too: the log has no holes.
 */
export class GroupCommit {
  readonly #journal: JournalVolume;
  readonly #failed: () => Error | undefined;
  readonly #fail: (e: unknown) => void;
  readonly #written: () => void;
  readonly #batches: Batch[] = [];
  #writing = false;
  #inWrite: Batch | undefined;

  /** `written`: called after each batch is written (the journal's `writtenSeq` has moved on). */
  constructor(journal: JournalVolume, hooks: { failed: () => Error | undefined; fail: (e: unknown) => void; written?: () => void }) {
    this.#journal = journal;
    this.#failed = hooks.failed;
    this.#fail = hooks.fail;
    this.#written = hooks.written ?? ((): void => undefined);
  }

  /** Queues an encoded record (synchronously, in sequence order); resolves once it is written. */
  enqueue(rec: EncodedRecord): Promise<void> {
    let b = this.#batches[this.#batches.length - 1];
    const len = rec.data?.length ?? 0;
    if (!b || b === this.#inWrite || b.records.length >= MAX_BATCH_RECORDS || b.bytes + len > MAX_BATCH_BYTES) {
      const d = deferred();
      b = { records: [], bytes: 0, done: d.promise, resolve: d.resolve, reject: d.reject };
      this.#batches.push(b);
    }
    b.records.push(rec);
    b.bytes += len;
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => void this.#writeLoop());
    }
    return b.done;
  }

  async #writeLoop(): Promise<void> {
    for (;;) {
      const b = this.#batches[0];
      if (!b) break;
      try {
        const failed = this.#failed();
        if (failed) throw failed;
        this.#inWrite = b;
        await this.#journal.writeBatch(b.records);
        this.#batches.shift();
        b.resolve();
        this.#written();
      } catch (e) {
        this.#batches.shift();
        this.#fail(e);
        b.reject(e);
      } finally {
        this.#inWrite = undefined;
      }
    }
    this.#writing = false;
  }
}
