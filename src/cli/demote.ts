import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatSize } from '../core/sizes.js';
import { formatTime } from '../core/time.js';
import { parseHostPort } from '../io/sockets.js';
import { groupPaths } from '../journal/group-files.js';
import { demoteGroup } from '../link/demote.js';
import { readLinkKey } from '../link/link-tls.js';
import { NAME } from '../link/messages.js';
import { emit, eventLog, type CommonOptions } from './output.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { s3Settings, withS3Options, type S3CliOptions } from './s3-options.js';
import { isS3Url } from '../s3/s3-url.js';
import { addReplicaWait, replicaWait } from './waiting.js';

interface DemoteCliOptions extends CommonOptions, S3CliOptions, KeyCliOptions {
  follow?: string;
  replica?: string;
  psk?: string;
  name?: string;
  full?: boolean;
  wait?: string;
}

export function registerDemote(program: Command): void {
  const cmd = program
    .command('demote')
    .description('failback, step 1: an old primary becomes a secondary of the promoted site — its volumes become the SVOLs of a replica in place and get only the chunks that differ')
    .argument('<GROUP_DIR>', 'the old primary\'s group (not served: stop jship serve first)')
    .option('--follow <HOST:PORT|TAPES>', 'the new primary\'s link address (jship link serve there), or its tapes: a directory, a tape file or s3://BUCKET/PREFIX (the first run writes GROUP_DIR/resync-request.json to carry there)')
    .option('--replica <DIR>', 'the replica its volumes become the SVOLs of (new or empty; default GROUP_DIR/replica)')
    .option('--psk <FILE>', 'the link key (default: GROUP_DIR/link.key, the group\'s own)')
    .option('--name <NAME>', 'this site\'s name at the new primary (default HOST-DIRNAME)')
    .option('--full', 'ask for a full base instead of the differing chunks (when those cannot be known: records purged, two promotions since)')
    .option('--json', 'print one JSON object');
  withS3Options(withKeyOptions(addReplicaWait(cmd)))
    .action(async (dir: string, opts: DemoteCliOptions) => {
      if (opts.follow === undefined) throw new JshipError('USAGE', 'demote needs --follow HOST:PORT or --follow TAPES', { hint: 'the address where the promoted site runs jship link serve, or a directory of its tapes' });
      if (opts.name !== undefined && !NAME.test(opts.name)) throw new JshipError('USAGE', `--name ${JSON.stringify(opts.name)} is not a secondary name`, { hint: 'letters, digits, . _ : - (up to 64), starting with a letter or digit' });
      const name = opts.name ?? `${hostname()}-${basename(resolve(dir))}`.replace(/[^A-Za-z0-9._:-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
      // Tapes: an existing path or an object-store prefix; else a link address.
      const byTapes = isS3Url(opts.follow) || existsSync(opts.follow);
      const keys = await keyRing(opts);
      const wait = replicaWait('demote', opts.wait);
      const follow = byTapes
        ? { tapes: [opts.follow], importOptions: { s3: s3Settings(opts), ...(keys ? { keys } : {}) } }
        : { from: parseHostPort(opts.follow, '--follow'), key: await readLinkKey(opts.psk ?? groupPaths(resolve(dir)).linkKey) };
      const r = await demoteGroup(dir, {
        ...follow, name, log: opts.json ? () => undefined : eventLog({ json: false }),
        ...(opts.replica !== undefined ? { replicaDir: opts.replica } : {}),
        ...(opts.full ? { full: true } : {}),
        ...(wait ? { wait } : {}),
      });
      const a = r.applied;
      if (r.refused.length > 0) process.exitCode = 1;
      emit(opts, r, () => [
        `${r.resumed ? 'carried on the demotion of' : 'demoted'} ${r.groupDir}: its volumes are the SVOLs of replica ${r.replica}, a secondary of epoch ${r.epoch} (takeover after seq ${r.takeoverSeq})`,
        r.diverged.records > 0
          ? `  its ${r.diverged.records} records after the takeover point (${formatSize(r.diverged.bytes)} in ${r.diverged.chunks} chunks) are kept on ${r.diverged.tape ?? '?'}, then overwritten`
          : '  it wrote nothing after the takeover point',
        `  received ${r.received.tapes} ${byTapes ? '' : 'link '}tapes, ${r.received.records} records${!a ? '' : r.full ? ' (a full base)' : ' (a resync base of the differing chunks, not the volumes)'}; volumes ${formatSize(r.volumeBytes)}`,
        ...r.refused.map((t) => `  REFUSED ${t.source}: ${t.message}`),
        ...(a
          ? [
              `  the SVOLs hold seq ${a.seq} (${formatTime(a.ts)}): ${formatSize(a.bytesWritten)} written${a.proved === true ? ', proved equal to the primary\'s digest' : ''}`,
              byTapes
                ? `  next: import the new primary's tapes into ${r.replica} and restore (jship import, jship restore ${r.replica}); to fail back, jship promote ${r.replica} --to NEW_GROUP_DIR once caught up`
                : `  next: jship link pull ${r.replica} --from ${opts.follow} --psk ${opts.psk ?? groupPaths(resolve(dir)).linkKey} --apply; to fail back, jship promote ${r.replica} --to NEW_GROUP_DIR once caught up`,
            ]
          : [
              `  DEMOTING: the ${r.full ? 'full' : 'resync'} base is not among these tapes yet; the volumes are untouched until it is${r.awaiting?.request ? `. Carry ${r.awaiting.request} to the new primary` : ''}`,
              `  there: ${r.awaiting?.command ?? ''}`,
              `  then here: jship demote ${dir} --follow MEDIA`,
            ]),
      ]);
    });
}
