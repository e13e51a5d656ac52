import type { FramePool } from '../tape/frame-pool.js';

/**
 * Frame workers started before a verb's own modules load. Each worker
 * takes 60–70 ms to load its own (zstd, the hashes) on this project's test
 * machines; started first, that runs beside the main thread loading the
 * verb's modules and opening the replica, instead of after them (a short
 * restore waited for its workers). Idle workers do not keep the process
 * alive, and `main` closes a pool no verb took.
 */
let early: Promise<FramePool> | undefined;

const made = (): Promise<FramePool> => import('../tape/frame-pool.js').then((m) => new m.FramePool());

/** Starts the pool now; `takeFramePool` hands it to the verb. */
export function startFramePool(): void {
  early ??= made();
  early.catch(() => undefined); // a failure is the taker's to see
}

/** The pool started early, or a new one: the caller owns it (and closes it). */
export function takeFramePool(): Promise<FramePool> {
  const p = early ?? made();
  early = undefined;
  return p;
}

/** Closes a pool started early that no verb took (a usage error, --help). */
export async function closeUntakenPool(): Promise<void> {
  const p = early;
  early = undefined;
  await (await p?.catch(() => undefined))?.close();
}
