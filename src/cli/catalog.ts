import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { rebuildCatalog } from '../replica/rebuild.js';
import { emit, type CommonOptions } from './output.js';
import { addReplicaWait, replicaWait } from './waiting.js';

export function registerCatalog(program: Command): void {
  addReplicaWait(withKeyOptions(program
    .command('catalog')
    .description('rebuild a replica\'s catalogue from its stored tapes alone')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--rebuild', 'read and verify every stored tape and rebuild the catalogue from them')
    .option('--json', 'print one JSON object')))
    .action(async (dir: string, opts: CommonOptions & KeyCliOptions & { rebuild?: boolean; wait?: string }) => {
      if (!opts.rebuild) throw new JshipError('USAGE', 'catalog needs --rebuild', { hint: 'jship catalog REPLICA_DIR --rebuild' });
      const keys = await keyRing(opts);
      const wait = replicaWait('catalog', opts.wait);
      const r = await rebuildCatalog(dir, { ...(keys ? { keys } : {}), ...(wait ? { wait } : {}) });
      if (r.tapes.some((x) => x.status === 'unreadable')) process.exitCode = 1;
      emit(opts, r, () => [
        ...r.tapes.map((x) => `${x.status.padEnd(10)} ${x.file}${x.serial !== null ? ` (tape ${x.serial}, ${x.records} records)` : ''}${x.message ? `: ${x.message}` : ''}`),
        `catalogue rebuilt: ${r.tapes.filter((x) => x.status !== 'unreadable').length} tapes; holds seq ${r.coverage.map((c) => `${c.from}..${c.to}`).join(', ') || 'none'}`,
        ...r.gaps.map((g) => `gap: records ${g.from}..${g.to} missing`),
      ]);
    });
}
