import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { Check } from '../core/check.js';
import { JshipError } from '../core/errors.js';
import { parseDuration } from '../core/time.js';
import { groupPaths } from '../journal/group-files.js';
import { onGroup } from '../owner/on-group.js';
import type { ServingStatus } from '../owner/serving.js';
import { siteChecks } from '../owner/site-checks.js';
import { siteStatus } from '../owner/site-status.js';
import { Replica } from '../replica/replica.js';
import { replicaChecks } from '../replica/replica-checks.js';
import { readDrills } from '../replica/drill-log.js';
import { emit, type CommonOptions } from './output.js';

interface CheckOptions extends CommonOptions {
  maxRpo?: string;
  maxUsage?: string;
  maxAge?: string;
  maxDrillAge?: string;
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('for monitoring and cron: test a group (journal state, RPO, usage) or a replica (age of the newest restorable point); exit 0 when all hold, 1 when one does not')
    .argument('<DIR>', 'a journal group or a replica')
    .option('--max-rpo <DURATION>', 'group: every consumer (tapes, link secondaries) holds all writes older than this (e.g. 1h)')
    .option('--max-usage <PERCENT>', 'group: the journal is at most this full (record slots or data, the higher)')
    .option('--max-age <DURATION>', 'replica: the newest restorable point is at most this old (e.g. 26h)')
    .option('--max-drill-age <DURATION>', 'replica: a drill (jship drill) passed at most this long ago (e.g. 8d)')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, opts: CheckOptions) => {
      const isGroup = existsSync(groupPaths(dir).config);
      const isReplica = existsSync(join(dir, 'replica.json'));
      if (!isGroup && !isReplica) {
        throw new JshipError('USAGE', `${dir} is neither a journal group (group.json) nor a replica (replica.json)`, { hint: 'name the group directory given to jship init, or a replica directory' });
      }
      let checks: Check[];
      if (isGroup) {
        if (opts.maxAge !== undefined || opts.maxDrillAge !== undefined) throw new JshipError('USAGE', `${opts.maxAge !== undefined ? '--max-age' : '--max-drill-age'} applies to a replica`, { hint: 'on a group, use --max-rpo (how old the oldest unsecured write is)' });
        const limits = {
          ...(opts.maxRpo !== undefined ? { maxRpo: seconds(opts.maxRpo, '--max-rpo') } : {}),
          ...(opts.maxUsage !== undefined ? { maxUsage: percent(opts.maxUsage) } : {}),
        };
        const site = await onGroup<ServingStatus>(dir, async (g) => ({ ...(await siteStatus(g)), serve: null }), { op: 'status', args: {} }, { open: { checkpointIntervalMs: 0 } });
        checks = siteChecks(site, limits);
      } else {
        if (opts.maxRpo !== undefined || opts.maxUsage !== undefined) throw new JshipError('USAGE', '--max-rpo and --max-usage apply to a journal group', { hint: 'on a replica, use --max-age or --max-drill-age' });
        const limits = {
          ...(opts.maxAge !== undefined ? { maxAge: seconds(opts.maxAge, '--max-age') } : {}),
          ...(opts.maxDrillAge !== undefined ? { maxDrillAge: seconds(opts.maxDrillAge, '--max-drill-age') } : {}),
        };
        const replica = await Replica.view(dir);
        try {
          checks = replicaChecks(replica.catalog, BigInt(Date.now()) * 1_000_000n, limits, await readDrills(replica.dir));
        } finally {
          await replica.close();
        }
      }
      const ok = checks.every((c) => c.ok);
      emit(opts, { dir, ok, checks }, () => [...checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.message}`), ok ? 'all checks hold' : `${checks.filter((c) => !c.ok).length} of ${checks.length} checks fail`]);
      if (!ok) process.exitCode = 1;
    });
}

function seconds(text: string, what: string): number {
  return Number(parseDuration(text, what)) / 1e9;
}

function percent(text: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(text.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 0 && n <= 100)) throw new JshipError('USAGE', `--max-usage ${JSON.stringify(text)} is not a percentage`, { hint: 'a number from 0 to 100, e.g. --max-usage 80' });
  return n;
}
