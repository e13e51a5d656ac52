import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { DEFAULT_EXPORT_WAIT_MS, type NextMedium } from '../tape/export.js';
import { JshipError } from '../core/errors.js';
import { formatSize, parseRate, parseSize } from '../core/sizes.js';
import { formatTime, parseDuration } from '../core/time.js';
import { onGroup } from '../owner/on-group.js';
import { absoluteRequest, checkParity, runExport, type ExportRequest } from '../tape/export-request.js';
import { onInterrupt } from './signals.js';
import { oneShotWait } from './waiting.js';
import { ZSTD_LEVEL_HELP, parseZstdLevel } from './zstd-level.js';
import { checkBlockSize } from '../tape/blocked-output.js';
import { emit, lazyProgress, toJson, type CommonOptions } from './output.js';
import { s3Settings, withS3Options, type S3CliOptions } from './s3-options.js';
import { isS3Url } from '../s3/s3-url.js';

interface ExportCliOptions extends CommonOptions, S3CliOptions {
  to?: string;
  base?: boolean;
  mediaSize?: string;
  keepUntilAck?: boolean;
  purgeOnClose?: boolean;
  encryptKey?: string;
  allowEmpty?: boolean;
  allowPlaintext?: boolean;
  wait?: string;
  bwlimit?: string;
  blockSize?: string;
  requireMount?: string;
  parity?: string;
  zstdLevel?: string;
  verifyAfterWrite?: boolean;
  nextMedia?: string;
  resyncFor?: string;
}

export function registerExport(program: Command): void {
  const cmd = program
    .command('export')
    .description('write the journal (and with --base, a full copy of the volumes) into tape files, then purge what is secured')
    .argument('<GROUP_DIR>', 'the journal group')
    .option('--to <DIR_OR_FILE>', 'a directory (tapes get sort-friendly names), a new file, a tape drive or FIFO (/dev/nst0), s3://BUCKET/PREFIX, or - for standard output')
    .option('--require-mount <MOUNT_POINT>', 'refuse (nothing written, nothing purged) unless MOUNT_POINT is a mounted file system and --to is on it: a carried disk that is not attached')
    .option('--block-size <SIZE>', 'to a tape drive, FIFO or standard output: write whole blocks of SIZE (default 64K for drives and FIFOs), the last one padded')
    .option('--parity <PERCENT>', 'add Reed-Solomon parity frames: that share of each group of up to 20 frames may be damaged or lost and is rebuilt on import (e.g. 10)')
    .option('--verify-after-write', 'read each tape back whole from the medium (past the page cache) and check every hash before it counts and the journal is purged')
    .option('--next-media <CMD>', 'at the end of a medium (a full disk, a tape drive at its end): run CMD (sh -c) to load the next one, then write the interrupted tape again, whole, on it')
    .option('--base', 'first write a base journal of every volume, read while writes go on')
    .option('--resync-for <FILE>', 'first write a resync base of the chunks an old primary being demoted lacks: FILE is the resync-request.json that jship demote --follow TAPES wrote there')
    .option('--media-size <SIZE>', 'split into tapes of at most SIZE (a media set; needs a directory)')
    .option('--keep-until-ack', 'do not purge the journal until `jship ack` brings an acknowledgement from the replica')
    .option('--purge-on-close', 'with --to - or a tape drive: purge once the tape was written and closed cleanly instead of waiting for an ack')
    .option('--zstd-level <N>', `zstd level of the tapes: ${ZSTD_LEVEL_HELP}`)
    .option('--encrypt-key <FILE>', 'encrypt segment payloads with AES-256-GCM under this 32-byte key')
    .option('--allow-empty', 'write a tape even when there is nothing to export')
    .option('--bwlimit <RATE>', 'write at most RATE bytes per second to the destination (rclone\'s meaning: 20M is 20 MiB/s, a bare number KiB/s, off)')
    .option('--wait <DURATION>', 'wait this long for an export of the same group that is running (in jship serve, or on its own), default 5m; then fail (EXPORT_BUSY, or GROUP_LOCKED)')
    .option('--allow-plaintext', 'write plaintext tapes although the chain\'s last tape was encrypted')
    .option('--json', 'print one JSON object (on stderr when the tape goes to standard output)');
  withS3Options(cmd)
    .action(async (dir: string, opts: ExportCliOptions) => {
      if (!opts.to) throw new JshipError('USAGE', 'export needs --to DIR_OR_FILE (or - for standard output)', { hint: 'e.g. jship export /srv/grp --to /mnt/tapes/' });
      const bwlimit = opts.bwlimit !== undefined ? parseRate(opts.bwlimit) : null;
      const req: ExportRequest = {
        to: opts.to,
        ...(opts.base ? { base: true } : {}),
        ...(opts.resyncFor !== undefined ? { resyncFor: opts.resyncFor } : {}),
        ...(opts.mediaSize !== undefined ? { mediaSize: parseSize(opts.mediaSize, '--media-size') } : {}),
        ...(opts.keepUntilAck ? { keepUntilAck: true } : {}),
        ...(opts.purgeOnClose ? { purgeOnClose: true } : {}),
        ...(opts.encryptKey !== undefined ? { encryptKey: opts.encryptKey } : {}),
        ...(opts.allowEmpty ? { allowEmpty: true } : {}),
        ...(opts.allowPlaintext ? { allowPlaintext: true } : {}),
        ...(opts.wait !== undefined ? { waitMs: Number(parseDuration(opts.wait, '--wait') / 1_000_000n) } : {}),
        ...(bwlimit !== null ? { bwlimit } : {}),
        ...(opts.requireMount !== undefined ? { requireMount: opts.requireMount } : {}),
        ...(opts.parity !== undefined ? { parity: checkParity(parsePercent(opts.parity)) } : {}),
        ...(opts.zstdLevel !== undefined ? { zstdLevel: parseZstdLevel(opts.zstdLevel, '--zstd-level') } : {}),
        ...(opts.verifyAfterWrite ? { verifyAfterWrite: true } : {}),
        ...(opts.nextMedia !== undefined ? { nextMedia: opts.nextMedia } : {}),
        ...(opts.blockSize !== undefined ? { blockSize: checkBlockSize(parseSize(opts.blockSize, '--block-size')) } : {}),
        // The caller's own endpoint, region and credentials, also when the group's owner does the upload.
        s3: isS3Url(opts.to) ? await (await import('../s3/s3-store.js')).resolveS3Settings(s3Settings(opts)) : s3Settings(opts),
      };
      const toStdout = opts.to === '-';
      const bar = lazyProgress(toStdout ? { json: true } : opts, 'exporting');
      const stopGuard = onInterrupt('export', () => 'tapes already renamed into place stay in the chain (and the journal may be purged of what they hold); the tape being written is not in place and nothing it held was purged (its hidden .partial file is replaced by the next export); if jship serve owns the group, the export goes on there (jship status shows the chain). Rerun the same command', opts.json === true && !toStdout);
      let result;
      try {
        result = await onGroup(
          dir,
          (g) => runExport(g, req, bar.onProgress, toStdout ? process.stdout : undefined, undefined, !toStdout && process.stdin.isTTY && process.stderr.isTTY ? askForMedium : undefined),
          { op: 'export', args: { ...absoluteRequest(req) }, onProgress: bar.onProgress },
          // Another export may hold the group on its own (no jship serve): waited for like one in a server.
          oneShotWait('export', req.waitMs ?? DEFAULT_EXPORT_WAIT_MS, toStdout && opts.json === true),
        );
      } finally {
        bar.stop();
        stopGuard();
      }
      const r = result;
      const json = {
        nothingToExport: r.nothingToExport,
        tapes: r.tapes,
        records: r.records,
        updates: r.updates && { firstSeq: r.updates.firstSeq, lastSeq: r.updates.lastSeq, firstTime: formatTime(r.updates.firstTs), lastTime: formatTime(r.updates.lastTs) },
        base: r.base,
        rawBytes: r.rawBytes,
        tapeBytes: r.tapeBytes,
        compressionRatio: r.tapeBytes > 0 ? r.rawBytes / r.tapeBytes : null,
        journalOut: r.journalOut,
        awaitingAck: r.awaitingAck,
        lostBeforeExport: r.lostBeforeExport,
        warnings: r.warnings,
        verifiedAfterWrite: opts.verifyAfterWrite === true && r.tapes.length > 0,
      };
      const lines = (): string[] => r.nothingToExport
        ? ['nothing to export: the journal holds no record after the last tape']
        : [
            `exported ${r.records} records${r.updates ? ` (seq ${r.updates.firstSeq}..${r.updates.lastSeq}, ${formatTime(r.updates.firstTs)} .. ${formatTime(r.updates.lastTs)})` : ''}${r.base ? `, ${r.base.scope} base ${r.base.baseId} complete at seq ${r.base.completeSeq}` : ''}`,
            ...r.tapes.map((t) => `  tape ${t.serial}: ${t.location}  ${formatSize(t.bytes)}`),
            ...(json.verifiedAfterWrite ? [`each tape was read back from the medium (its pages dropped from the cache first) and verified whole before it counted`] : []),
            `${formatSize(r.rawBytes)} of records in ${formatSize(r.tapeBytes)} of tape${r.tapeBytes > 0 ? ` (${(r.rawBytes / r.tapeBytes).toFixed(2)}:1)` : ''}`,
            r.awaitingAck ? `journal kept until an acknowledgement arrives (jship ack); journal-out is seq ${r.journalOut}` : `journal purged: journal-out is now seq ${r.journalOut}`,
            ...r.warnings.map((w) => `warning: ${w}`),
            ...(r.lostBeforeExport ? [`warning: records ${r.lostBeforeExport.from}..${r.lostBeforeExport.to} were purged before any export took them: the replica will show this gap`] : []),
          ];
      if (toStdout) {
        process.stderr.write(opts.json ? `${toJson(json)}\n` : `${lines().join('\n')}\n`);
      } else {
        emit(opts, json, lines);
      }
    });
}

/** A percentage as given: 10 or 10%. */
function parsePercent(text: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(text.trim());
  if (!m) throw new JshipError('USAGE', `--parity ${text}: not a percentage`, { hint: 'e.g. --parity 10' });
  return Number(m[1]);
}

/** Without --next-media, on a terminal: asks the operator to load the next medium. */
async function askForMedium(m: NextMedium): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`\n${m.where}: the medium is full${m.counted.length > 0 ? ` (tapes ${m.counted.join(', ')} finished on it and counted)` : ''}. Load medium ${m.medium} there and press Enter to go on with tape ${m.nextSerial}, or type q to stop: `);
    if (answer.trim().toLowerCase().startsWith('q')) {
      throw new JshipError('MEDIA_END', `${m.where}: the medium ended and the operator stopped the export`, { hint: 'run the same export again with the next medium in place: it goes on after the last counted tape' });
    }
  } finally {
    rl.close();
  }
}
