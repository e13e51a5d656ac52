import { formatDuration, type Check } from '../core/check.js';
import { formatTime } from '../core/time.js';
import { isJshipError } from '../core/errors.js';
import type { Catalog } from './catalog.js';
import { planRestore } from './restore-plan.js';

/** What `jship check REPLICA_DIR` tests: with `maxAge` (seconds), that the newest restorable point is at most that old at `now` (ns). */
export function replicaChecks(cat: Catalog, now: bigint, limits: { maxAge?: number }): Check[] {
  const out: Check[] = [{ name: 'catalogue', ok: true, message: `catalogue readable: ${cat.tapes().length} tapes` }];
  if (limits.maxAge !== undefined) {
    let ts: bigint;
    let seq: bigint;
    try {
      ({ ts, seq } = planRestore(cat, { kind: 'latest' }));
    } catch (e) {
      if (!isJshipError(e, 'RESTORE_REFUSED')) throw e;
      out.push({ name: 'age', ok: false, message: `nothing can be restored: ${e.message}` });
      return out;
    }
    const age = Math.max(0, Number(now - ts) / 1e9);
    out.push({
      name: 'age',
      ok: age <= limits.maxAge,
      message: `newest restorable point seq ${seq} at ${formatTime(ts)}: ${formatDuration(age)} old (at most ${formatDuration(limits.maxAge)})`,
    });
  }
  return out;
}
