import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatSize } from '../core/sizes.js';
import { formatTime, parseTime } from '../core/time.js';
import { expireReplica } from '../replica/expire.js';
import { serialText, tapeRef } from '../replica/catalog.js';
import { emit, type CommonOptions } from './output.js';
import { s3Settings, withS3Options, type S3CliOptions } from './s3-options.js';
import { addReplicaWait, replicaWait } from './waiting.js';
import { parseS3Url } from '../s3/s3-url.js';

export function registerExpire(program: Command): void {
  const cmd = program
    .command('expire')
    .description('remove tapes no restore point after the cut needs (a dry run unless --confirm); with --vault, their objects in the store too')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--keep-since <TIME>', 'keep every restore point from TIME on')
    .option('--keep-last <N>', 'keep the restore points from the Nth newest complete base on')
    .option('--vault <S3_URL>', 'also delete the expired tapes\' objects under s3://BUCKET/PREFIX (those retention has removed from this replica, now or before)')
    .option('--confirm', 'delete; without it, only say what would go')
    .option('--json', 'print one JSON object');
  addReplicaWait(withS3Options(cmd))
    .action(async (dir: string, opts: CommonOptions & S3CliOptions & { keepSince?: string; keepLast?: string; confirm?: boolean; vault?: string; wait?: string }) => {
      const wait = replicaWait('expire', opts.wait);
      if (opts.vault !== undefined) parseS3Url(opts.vault);
      if ((opts.keepSince === undefined) === (opts.keepLast === undefined)) {
        throw new JshipError('USAGE', 'expire needs exactly one of --keep-since TIME and --keep-last N', { hint: 'e.g. jship expire /srv/replica --keep-since 2026-11-01T00:00:00Z' });
      }
      const rule = opts.keepSince !== undefined ? { keepSinceTs: parseTime(opts.keepSince) } : { keepLast: Number(opts.keepLast) };
      const r = await expireReplica(dir, rule, opts.confirm === true, wait);
      let vault: { url: string; objects: string[]; deleted: boolean } | null = null;
      if (opts.vault !== undefined) {
        const settings = s3Settings(opts);
        const { expireTapeObjects } = await import('../s3/s3-source.js');
        // Tapes of the tape chain only (link tapes never go to a vault), each as its serial in its epoch's chain.
        const tapes = r.expiredSerials.map(tapeRef).filter((t) => t.chain === 'tapes').map((t) => ({ serial: t.serial, epoch: t.epoch ?? 1 }));
        const objects = await expireTapeObjects(opts.vault, tapes, opts.confirm === true, settings);
        vault = { url: opts.vault, objects, deleted: opts.confirm === true };
      }
      emit(opts, { ...r, remove: r.remove.map((x) => ({ ...tapeRef(x.serial), file: x.file, bytes: x.bytes })), keep: r.keep.map((x) => tapeRef(x.serial)), keptForSvols: r.keptForSvols.map(tapeRef), expiredSerials: undefined, expired: r.expiredSerials.map(tapeRef), vault }, () => [
        r.reason,
        ...(r.keepFromBase ? [`kept restore points start from base ${r.keepFromBase.baseId}, complete ${formatTime(r.keepFromBase.completeTs)}`] : []),
        r.remove.length === 0
          ? 'nothing to remove'
          : `${r.removed ? 'removed' : 'would remove'} ${r.remove.length} tapes (${formatSize(r.bytes)}): ${r.remove.map((x) => serialText(x.serial)).join(', ')}${r.removed ? '' : ' (run again with --confirm to delete)'}`,
        ...(vault ? [vault.objects.length === 0 ? `vault ${vault.url}: no expired tape objects there` : `vault ${vault.url}: ${vault.deleted ? 'deleted' : 'would delete'} ${vault.objects.join(', ')}`] : []),
      ]);
    });
}
