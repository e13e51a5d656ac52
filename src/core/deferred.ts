/** A promise with its resolve and reject, settled by whoever holds it. */
export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

/**
 * A promise to be settled later. Its rejection is marked handled: the
 * waiters that await it see it; nobody waiting is not an unhandled rejection.
 */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/**
 * Whether `p` settles (either way) within `ms`. The timer holds the process
 * open: a wait that nothing else holds (a server's stop whose connections
 * all went) ends in `false` and the caller's next step, not in a process
 * that stops before its work is done.
 */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    const done = (): void => {
      clearTimeout(t);
      resolve(true);
    };
    p.then(done, done);
  });
}
