import type { JshipError } from '../core/errors.js';

/**
 * How a verb waits for a group that a one-shot command (an export, a scan:
 * no control socket) holds on its own: up to `ms`, saying once on standard
 * error that it waits (onGroup's `wait`) unless `quiet` (standard error
 * carries the one JSON object: export --to - --json).
 */
export function oneShotWait(verb: string, ms: number, quiet = false): { waitMs: number; onWait: (held: JshipError) => void } {
  return {
    waitMs: ms,
    onWait: (held) => {
      if (!quiet) process.stderr.write(`jship ${verb}: ${held.message}; waiting up to ${Math.round(ms / 1000)} s for it to end\n`);
    },
  };
}
