import type { Command } from 'commander';
import { formatTime } from '../core/time.js';
import { JournalGroup } from '../journal/journal-group.js';
import { emit, type CommonOptions } from './output.js';

export function registerMark(program: Command): void {
  program
    .command('mark')
    .description('journal a named restore point (a marker record); names are unique within the group')
    .argument('<GROUP_DIR>', 'the journal group')
    .argument('<NAME>', 'name of the restore point, e.g. before-upgrade')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, name: string, opts: CommonOptions) => {
      const group = await JournalGroup.open(dir);
      try {
        const r = await group.mark(name);
        emit(opts, { name, seq: r.seq, timestamp: formatTime(r.timestamp), timestampNs: r.timestamp }, () => [
          `marked "${name}" at seq ${r.seq}, ${formatTime(r.timestamp)}`,
        ]);
      } finally {
        await group.close();
      }
    });
}
