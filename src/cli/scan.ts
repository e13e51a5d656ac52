import type { Command } from 'commander';
import { JshipError, isJshipError } from '../core/errors.js';
import { callOwner } from '../owner/control-client.js';
import { answerWhileHeld } from '../owner/one-shot-control.js';
import { whenNoOneShot } from '../owner/on-group.js';
import { oneShotWait } from './waiting.js';
import { formatSize, parseSize } from '../core/sizes.js';
import { formatTime, parseDuration } from '../core/time.js';
import { scanGroup } from '../journal/scan.js';
import { emit, lazyProgress, type CommonOptions } from './output.js';

export function registerScan(program: Command): void {
  program
    .command('scan')
    .description('journal the blocks changed outside jship since the last scan (the first scan records hashes only)')
    .argument('<GROUP_DIR>', 'the journal group')
    .option('--block-size <SIZE>', 'block size of the first scan (default 64K; later scans keep it)')
    .option('--wait <DURATION>', 'wait this long for an export that holds the group on its own (no jship serve) to end; then fail (GROUP_LOCKED)', '5m')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, opts: CommonOptions & { blockSize?: string; wait: string }) => {
      const blockSize = opts.blockSize !== undefined ? parseSize(opts.blockSize, '--block-size') : undefined;
      if (blockSize !== undefined && (blockSize < 512 || blockSize > 16 * 1024 * 1024 || blockSize % 512 !== 0)) {
        throw new JshipError('BAD_SIZE', `--block-size ${opts.blockSize} must be a multiple of 512 between 512 and 16M`, { hint: 'e.g. 64K' });
      }
      await whenNoOneShot(dir, oneShotWait('scan', Number(parseDuration(opts.wait, '--wait') / 1_000_000n)));
      const bar = lazyProgress(opts, 'scanning');
      let r;
      try {
        const scanOpts = { ...(blockSize !== undefined ? { blockSize } : {}), onProgress: bar.onProgress, whileHeld: answerWhileHeld };
        r = await scanGroup(dir, scanOpts).catch(async (e: unknown) => {
          // Owned by a server: it is asked (and says why it will not scan), like mark, export and status.
          if (!isJshipError(e, 'GROUP_LOCKED')) throw e;
          return (await callOwner(dir, 'scan', {}, e)) as Awaited<ReturnType<typeof scanGroup>>;
        });
      } finally {
        bar.stop();
      }
      const rep = r;
      emit(opts, { ...rep, marker: { seq: rep.marker.seq, timestamp: formatTime(rep.marker.timestamp) } }, () => [
        ...rep.volumes.map((v) => v.first
          ? `${v.name}: first scan, block hashes recorded (${rep.blockSize}-byte blocks); nothing journaled — a base export covers it`
          : `${v.name}: ${v.changedBlocks} changed blocks (${formatSize(v.bytes)}) journaled in ${v.records} records${v.grownFrom !== null ? `; grew from ${formatSize(v.grownFrom)}` : ''}`),
        `scan marker at seq ${rep.marker.seq}, ${formatTime(rep.marker.timestamp)} (consistent only if the volumes were quiet while scanned)`,
      ]);
    });
}
