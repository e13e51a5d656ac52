import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isJshipError } from '../core/errors.js';
import { formatSize } from '../core/sizes.js';
import { formatTime } from '../core/time.js';
import { Replica } from '../replica/replica.js';
import { serialText, tapeRef } from '../replica/catalog.js';
import { chainReport } from '../replica/coverage.js';
import { expandTapeSources, findTrailer, readLabel } from '../tape/tape-file.js';
import { verifyTapes } from '../tape/verify.js';
import { readBlockSize, withDeviceOptions, type DeviceCliOptions } from './device-options.js';
import type { TapeTrailer } from '../tape/label.js';
import { emit, table, type CommonOptions } from './output.js';
import { s3Settings, withS3Options, type S3CliOptions } from './s3-options.js';
import { isS3Url } from '../s3/s3-url.js';

const t = (ns: bigint | string | null | undefined): string => (ns === null || ns === undefined ? '-' : formatTime(BigInt(ns)));

export function registerTapes(program: Command): void {
  const cmd = program
    .command('tapes')
    .description('list the tapes of a replica (from its catalogue) or of a directory of tape files (from their labels and trailers)')
    .argument('<REPLICA_DIR_OR_DIR>', 'a replica, a directory holding tapes, a tape file, a tape drive or FIFO (the tape read through), or s3://BUCKET/PREFIX')
    .option('--json', 'print one JSON object');
  withDeviceOptions(withS3Options(cmd))
    .action(async (dir: string, opts: CommonOptions & S3CliOptions & DeviceCliOptions) => {
      const isReplica = !isS3Url(dir) && await fsp.access(join(dir, 'replica.json')).then(() => true, () => false);
      if (isReplica) {
        const replica = await Replica.view(dir);
        try {
          await replica.checkCatalogued();
          const tapes = replica.catalog.tapes();
          const chain = chainReport(replica.catalog);
          emit(opts, { replica: replica.dir, groupId: replica.config.groupId, tapes: tapes.map((x) => ({ ...x, ...tapeRef(x.serial) })), ...chain }, () => [
            `replica ${replica.dir} of group ${replica.config.groupId}: ${tapes.length} tapes`,
            ...table([['serial', 'status', 'records', 'seq', 'time', 'size', 'file'], ...tapes.map((x) => [
              serialText(x.serial), x.status + (x.keyId ? ' enc' : ''), String(x.records), x.firstSeq !== null ? `${x.firstSeq}..${x.lastSeq}` : (x.baseId !== null ? `base ${x.baseId}` : '-'),
              `${t(x.firstTs)} .. ${t(x.lastTs)}`, formatSize(x.bytes), x.file,
            ])]),
            ...tapes.filter((x) => x.problem).map((x) => `${x.serial < 0 ? `link tape ${-x.serial}` : `tape ${x.serial}`}: ${x.problem}`),
            ...chain.gaps.map((g) => `gap: records ${g.from}..${g.to} missing${g.serials.length ? ` (tapes ${g.serials.join(', ')})` : ''}`),
            ...(chain.missingSerials.length ? [`tapes not yet imported: ${chain.missingSerials.join(', ')}`] : []),
          ]);
        } finally {
          await replica.close();
        }
        return;
      }
      const files = await expandTapeSources([dir], s3Settings(opts), readBlockSize(opts));
      const rows: Array<{ file: string; bytes: number; serial: number | null; groupId: string | null; encrypted: boolean | null; mediaSet: { id: string; index: number } | null; trailer: TapeTrailer | null; problem: string | null }> = [];
      for (const src of files) {
        const f = src.where;
        const size = await src.size();
        if (size < 0) {
          // A drive or a pipe is read once, through (as tar -t reads it): verified on the way, its trailer at its end.
          const [v] = await verifyTapes([src]);
          const l = v?.label ?? null;
          rows.push({ file: f, bytes: v?.bytes ?? 0, serial: l?.serial ?? null, groupId: l?.groupId ?? null, encrypted: l ? l.encryption !== null : null, mediaSet: l?.mediaSet ?? null, trailer: v?.trailer ?? null, problem: v?.trailer ? null : v?.error?.message ?? 'no trailer found' });
          continue;
        }
        try {
          const label = await readLabel(src);
          const trailer = await findTrailer(src);
          rows.push({ file: f, bytes: size, serial: label.serial, groupId: label.groupId, encrypted: label.encryption !== null, mediaSet: label.mediaSet, trailer: trailer ?? null, problem: trailer ? null : 'no trailer found: truncated or damaged (jship verify tells more)' });
        } catch (e) {
          if (!isJshipError(e)) throw e;
          rows.push({ file: f, bytes: size, serial: null, groupId: null, encrypted: null, mediaSet: null, trailer: null, problem: e.message });
        }
      }
      if (rows.some((r) => r.problem)) process.exitCode = 1;
      emit(opts, { dir, tapes: rows }, () => [
        ...table([['serial', 'records', 'seq', 'time', 'size', 'file'], ...rows.map((r) => [
          String(r.serial ?? '?'), String(r.trailer?.records ?? '?'),
          r.trailer?.updates ? `${r.trailer.updates.firstSeq}..${r.trailer.updates.lastSeq}` : r.trailer?.base ? `base ${r.trailer.base.baseId}` : '-',
          r.trailer?.updates ? `${t(r.trailer.updates.firstTs)} .. ${t(r.trailer.updates.lastTs)}` : '-', formatSize(r.bytes), r.file,
        ])]),
        ...rows.filter((r) => r.problem).map((r) => `${r.file}: ${r.problem}`),
      ]);
    });
}

