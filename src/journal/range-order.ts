interface Op {
  volume: number;
  start: number;
  end: number;
  done: Promise<void>;
}

/** A registered operation: start it once `ready` resolves, call `finish` when it is over. */
export interface OrderedOp {
  ready: Promise<void>;
  finish(): void;
}

/**
 * Keeps operations on overlapping ranges of a volume in the order they were
 * registered, while letting disjoint ones run in parallel. Registration is
 * synchronous, so registering in sequence-number order (in the same tick as
 * the number is given out) makes PVOL writes and base reads follow the
 * journal's order: the PVOL always agrees with the journal.
 */
export class RangeOrder {
  #ops: Op[] = [];

  register(volume: number, start: number, length: number): OrderedOp {
    const end = start + Math.max(length, 1);
    const deps: Promise<void>[] = [];
    for (const op of this.#ops) {
      if (op.volume === volume && op.start < end && start < op.end) deps.push(op.done);
    }
    let finish!: () => void;
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const op: Op = { volume, start, end, done };
    this.#ops.push(op);
    const ready = deps.length === 0 ? Promise.resolve() : deps.length === 1 ? (deps[0] as Promise<void>) : Promise.all(deps).then(() => undefined);
    return {
      ready,
      finish: () => {
        const i = this.#ops.indexOf(op);
        if (i >= 0) this.#ops.splice(i, 1);
        finish();
      },
    };
  }

  /** Resolves when every operation registered so far has finished. */
  async idle(): Promise<void> {
    await Promise.all(this.#ops.map((o) => o.done));
  }

  get size(): number {
    return this.#ops.length;
  }
}
