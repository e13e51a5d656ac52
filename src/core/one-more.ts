/**
 * Runs a task one at a time. A call while a run is going may have come after
 * what that run covers, so it gets one more run after it; every call made
 * while that second one waits shares it (a flush or checkpoint coalesced).
 */
export class OneMore {
  readonly #task: () => Promise<void>;
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;

  constructor(task: () => Promise<void>) {
    this.#task = task;
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  run(): Promise<void> {
    const running = this.#running;
    if (running) {
      this.#queued ??= running.catch(() => undefined).then(() => {
        this.#queued = undefined;
        return this.#start();
      });
      return this.#queued;
    }
    return this.#start();
  }

  #start(): Promise<void> {
    const run = this.#task();
    this.#running = run;
    const clear = (): void => {
      if (this.#running === run) this.#running = undefined;
    };
    run.then(clear, clear);
    return run;
  }
}
