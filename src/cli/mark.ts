import type { Command } from 'commander';
import { formatTime } from '../core/time.js';
import { onGroup } from '../owner/on-group.js';
import { emit, type CommonOptions } from './output.js';

export function registerMark(program: Command): void {
  program
    .command('mark')
    .description('journal a named restore point (a marker record); names are unique within the group; works while jship serve runs')
    .argument('<GROUP_DIR>', 'the journal group')
    .argument('<NAME>', 'name of the restore point, e.g. before-upgrade')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, name: string, opts: CommonOptions) => {
      const r = await onGroup(dir, (g) => g.mark(name), { op: 'mark', args: { name } });
      emit(opts, { name, seq: r.seq, timestamp: formatTime(r.timestamp), timestampNs: r.timestamp }, () => [
        `marked "${name}" at seq ${r.seq}, ${formatTime(r.timestamp)}`,
      ]);
    });
}
