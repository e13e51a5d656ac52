import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatSize, parseRate } from '../core/sizes.js';
import { onGroup } from '../owner/on-group.js';
import { emit, type CommonOptions } from './output.js';

export function registerBwlimit(program: Command): void {
  program
    .command('bwlimit')
    .description('change the bandwidth limit of what the group\'s running server is sending now: exports in progress and its link sessions')
    .argument('<GROUP_DIR>', 'a group that jship serve, link serve or link push owns')
    .argument('<RATE>', 'bytes per second as in rclone (20M is 20 MiB/s, a bare number KiB/s), or off')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, text: string, opts: CommonOptions) => {
      const rate = parseRate(text, 'RATE');
      const r = await onGroup<{ exports: number; link: boolean; rate: number | null }>(dir, async () => {
        throw new JshipError('USAGE', `no jship serve owns ${dir}: nothing is running to limit`, { hint: 'give --bwlimit to jship export or jship link, or --link-bwlimit to jship serve' });
      }, { op: 'bwlimit', args: { rate } });
      emit(opts, r, () => [`${rate === null ? 'no limit' : `at most ${formatSize(rate)}/s`} from now on for ${r.exports} running export${r.exports === 1 ? '' : 's'}${r.link ? ' and the link\'s sessions' : ''}`]);
    });
}
