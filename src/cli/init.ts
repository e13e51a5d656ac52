import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatSize, parseSize } from '../core/sizes.js';
import { parseVolumeSpec } from '../core/volume-spec.js';
import type { JournalFullPolicy } from '../core/group-config.js';
import { createGroup } from '../journal/group-create.js';
import { planLayout } from '../core/journal-layout.js';
import { emit, progress, table, type CommonOptions } from './output.js';

interface InitOptions extends CommonOptions {
  volume: string[];
  journalSize?: string;
  journal?: string;
  journalFull: string;
  blockTimeout: string;
  nearlyFull: string;
  chunkSize: string;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('create a journal group: its volumes (PVOLs) and a preallocated journal volume')
    .argument('<GROUP_DIR>', 'new or empty directory for the group')
    .option('--volume <NAME=PATH[:SIZE]>', 'a volume; repeat for each. PATH1,PATH2,... concatenates files into a volume group; with :SIZE a missing file is created', collect, [])
    .option('--journal-size <SIZE>', 'size of the journal volume (K, M, G, T are powers of 1024)')
    .option('--journal <PATH>', 'where the journal file goes (default GROUP_DIR/journal.jv)')
    .option('--journal-full <POLICY>', 'when the journal is full: block (writers wait) or suspend (track writes in a dirty bitmap)', 'block')
    .option('--block-timeout <SECONDS>', 'block policy: how long a write waits for space before it fails', '30')
    .option('--nearly-full <PERCENT>', 'usage from which status says nearly-full', '80')
    .option('--chunk-size <SIZE>', 'chunk of base reads and of the dirty bitmap', '1M')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, opts: InitOptions) => {
      if (opts.volume.length === 0) throw new JshipError('USAGE', 'init needs at least one --volume NAME=PATH[:SIZE]', { hint: 'e.g. jship init /srv/grp --volume data=/srv/data.img:10G --journal-size 1G' });
      if (opts.journalSize === undefined) throw new JshipError('USAGE', 'init needs --journal-size SIZE', { hint: 'size the journal to hold the writes between two exports, e.g. --journal-size 1G' });
      if (opts.journalFull !== 'block' && opts.journalFull !== 'suspend') {
        throw new JshipError('USAGE', `--journal-full "${opts.journalFull}" is not a policy`, { hint: 'use block or suspend' });
      }
      const volumes = opts.volume.map(parseVolumeSpec);
      const journalSize = parseSize(opts.journalSize, '--journal-size');
      const layout = planLayout(journalSize);
      const blockTimeout = Number(opts.blockTimeout);
      if (!Number.isFinite(blockTimeout) || blockTimeout < 0) throw new JshipError('USAGE', `--block-timeout "${opts.blockTimeout}" is not a number of seconds`);
      const nearlyFull = Number(opts.nearlyFull);
      if (!(nearlyFull > 0 && nearlyFull <= 100)) throw new JshipError('USAGE', `--nearly-full "${opts.nearlyFull}" is not a percentage in (0, 100]`);
      const chunkSize = parseSize(opts.chunkSize, '--chunk-size');
      if (chunkSize < 4096 || (chunkSize & (chunkSize - 1)) !== 0) {
        throw new JshipError('BAD_SIZE', `--chunk-size ${opts.chunkSize} must be a power of two of at least 4K`, { hint: 'e.g. 64K or 1M' });
      }
      const bar = progress(opts, 'preallocating journal', journalSize);
      let config;
      try {
        config = await createGroup(dir, {
          volumes,
          journalSize,
          ...(opts.journal !== undefined ? { journalPath: opts.journal } : {}),
          journalFull: opts.journalFull as JournalFullPolicy,
          blockTimeoutMs: Math.round(blockTimeout * 1000),
          nearlyFullPercent: nearlyFull,
          chunkSize,
          onProgress: (done) => bar.update(done),
        });
      } finally {
        bar.stop();
      }
      emit(opts, { dir, ...config, layout }, () => [
        `created group ${config.groupId} in ${dir}`,
        `journal ${config.journal.path}: ${formatSize(journalSize)} (${layout.metaSlots} record slots, ${formatSize(layout.dataSize)} of data), when full: ${config.policy.journalFull}`,
        'volumes:',
        ...table(config.volumes.map((v) => [v.name, formatSize(v.extents.reduce((s, e) => s + e.size, 0)), v.extents.map((e) => e.path).join(' + ')])),
      ]);
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
