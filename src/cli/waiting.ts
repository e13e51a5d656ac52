import type { Command } from 'commander';
import type { JshipError } from '../core/errors.js';
import { parseDuration } from '../core/time.js';
import type { ReplicaWait } from '../replica/replica.js';

/** Told once on standard error when a verb starts waiting for another command to let go. */
function tellWaiting(verb: string, ms: number, quiet: boolean): (held: JshipError) => void {
  return (held) => {
    if (!quiet) process.stderr.write(`jship ${verb}: ${held.message}; waiting up to ${Math.round(ms / 1000)} s for it to end\n`);
  };
}

/**
 * How a verb waits for a group that a one-shot command (an export, a scan:
 * it answers status only) holds on its own: up to `ms`, saying once on
 * standard error that it waits (onGroup's `wait`) unless `quiet` (standard
 * error carries the one JSON object: export --to - --json).
 */
export function oneShotWait(verb: string, ms: number, quiet = false): { waitMs: number; onWait: (held: JshipError) => void } {
  return { waitMs: ms, onWait: tellWaiting(verb, ms, quiet) };
}

/** `--wait DURATION` of a verb that takes a replica, which one command uses at a time. */
export function addReplicaWait(cmd: Command): Command {
  return cmd.option('--wait <DURATION>', 'wait this long for the replica while another jship command uses it (an import, a restore, an expire), then fail (GROUP_LOCKED); default: fail at once');
}

/** The wait `--wait` asks for (undefined: none, refused at once as before). */
export function replicaWait(verb: string, wait: string | undefined): ReplicaWait | undefined {
  if (wait === undefined) return undefined;
  const ms = Number(parseDuration(wait, '--wait') / 1_000_000n);
  return { ms, onWait: tellWaiting(verb, ms, false) };
}
