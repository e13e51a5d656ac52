import type { JshipError } from '../core/errors.js';

/**
 * How a verb waits for a group that a one-shot command (an export, a scan:
 * no control socket) holds on its own: up to `ms`, saying once on standard
 * error that it waits (onGroup's `wait`).
 */
export function oneShotWait(verb: string, ms: number): { waitMs: number; onWait: (held: JshipError) => void } {
  return { waitMs: ms, onWait: (held) => process.stderr.write(`jship ${verb}: ${held.message}; waiting up to ${Math.round(ms / 1000)} s for it to end\n`) };
}
