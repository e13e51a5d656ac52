import { formatDuration, type Check } from '../core/check.js';
import { formatTime } from '../core/time.js';
import { isJshipError } from '../core/errors.js';
import type { Catalog } from './catalog.js';
import { planRestore } from './restore-plan.js';
import type { DrillRecord } from './drill-log.js';

/**
 * What `jship check REPLICA_DIR` tests at `now` (ns): with `maxAge`
 * (seconds), that the newest restorable point is at most that old; with
 * `maxDrillAge`, that a drill passed at most that long ago.
 */
export function replicaChecks(cat: Catalog, now: bigint, limits: { maxAge?: number; maxDrillAge?: number }, drills: readonly DrillRecord[] = []): Check[] {
  const out: Check[] = [{ name: 'catalogue', ok: true, message: `catalogue readable: ${cat.tapes().length} tapes` }];
  if (limits.maxDrillAge !== undefined) {
    const passed = drills.filter((d) => d.ok).at(-1);
    const last = drills.at(-1);
    const failedSince = last && !last.ok ? `; the last drill (${last.finishedAt}, ${last.point}) FAILED` : '';
    if (!passed) out.push({ name: 'drill', ok: false, message: `no drill has passed on this replica${failedSince}` });
    else {
      const age = Math.max(0, (Number(now / 1_000_000n) - Date.parse(passed.finishedAt)) / 1000);
      out.push({
        name: 'drill',
        ok: age <= limits.maxDrillAge,
        message: `last passed drill ${passed.finishedAt} (${passed.point}): ${formatDuration(age)} ago (at most ${formatDuration(limits.maxDrillAge)})${failedSince}`,
      });
    }
  }
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
