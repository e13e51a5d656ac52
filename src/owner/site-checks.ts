import { formatDuration, type Check } from '../core/check.js';
import type { SiteStatus } from './site-status.js';
import { outsideAdvice, type OutsideChange } from '../journal/group-files.js';

export interface SiteLimits {
  /** Seconds: every consumer's RPO at most this. */
  maxRpo?: number;
  /** Percent: journal usage (slots or data, the higher) at most this. */
  maxUsage?: number;
}

/**
 * What `jship check GROUP_DIR` tests (pure): the journal takes writes; with
 * limits, each consumer's RPO and the journal's usage. A detached secondary
 * or a journal nothing secures fails the RPO check: nothing protects it.
 */
export function siteChecks(site: SiteStatus, limits: SiteLimits): Check[] {
  const s = site.status;
  const out: Check[] = [];
  const bad = s.state === 'full' || s.state === 'suspended' || s.state === 'resync-pending';
  out.push({ name: 'state', ok: !bad, message: `journal state ${s.state}${bad ? ` (${site.heldBy.why})` : ''}` });
  if (s.outside) out.push({ name: 'outside', ok: false, message: outsideText(s.outside, s.dir) });
  if (limits.maxRpo !== undefined) {
    const max = limits.maxRpo;
    const pinning = site.consumers.filter((c) => c.pins);
    if (pinning.length === 0) out.push({ name: 'rpo', ok: false, message: 'nothing secures the journal: no tape exported and no link secondary attached' });
    for (const c of site.consumers) {
      const who = c.kind === 'tapes' ? 'tapes' : `secondary ${c.name}`;
      if (!c.pins) {
        // A chain that never wrote a tape on a link-only site is not a consumer; a detached secondary is one that is lost.
        if (c.kind === 'secondary') out.push({ name: `rpo ${who}`, ok: false, message: `${who} is detached (a failover left it and the journal filled): it secures nothing` });
        continue;
      }
      const ok = c.rpoSeconds !== null && c.rpoSeconds <= max;
      out.push({ name: `rpo ${who}`, ok, message: `${who}: RPO ${c.rpoSeconds === null ? 'unknown' : formatDuration(c.rpoSeconds)} (at most ${formatDuration(max)}), ${c.behind.records} records behind` });
    }
  }
  if (limits.maxUsage !== undefined) {
    const used = Math.max(s.journal.usagePercent.metadata, s.journal.usagePercent.data);
    const full = s.rates.forecast.fifteenMinutes.fullInSeconds;
    out.push({
      name: 'usage',
      ok: used <= limits.maxUsage,
      message: `journal ${used}% used (at most ${limits.maxUsage}%)${full === null ? '' : `, full in ${formatDuration(full)} at the last 15 minutes' rate`}`,
    });
  }
  return out;
}

/** What a group whose volume files changed outside jship says, and what to do. */
export function outsideText(o: OutsideChange, dir: string): string {
  const v = o.volumes.length > 1 ? `volumes ${o.volumes.join(', ')}` : `volume ${o.volumes[0]}`;
  return `the files of ${v} changed outside jship (seen ${o.noticedAt}): the journal and the secondaries lack those changes; ${outsideAdvice(dir)}`;
}
