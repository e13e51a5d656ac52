import type { Command } from 'commander';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JshipError } from '../core/errors.js';
import { runDemo } from '../demo/demo.js';
import { emit, type CommonOptions } from './output.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the whole flow on local files and check every result byte for byte')
    .argument('[DIR]', 'new or empty directory for the demo files (default: a new directory under the system temp dir)')
    .option('--json', 'print one JSON object')
    .action(async (dirArg: string | undefined, opts: CommonOptions) => {
      let dir: string;
      if (dirArg === undefined) {
        dir = await fsp.mkdtemp(join(tmpdir(), 'jship-demo-'));
      } else {
        dir = resolve(dirArg);
        const entries = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return [];
          throw e;
        });
        if (entries.length > 0) throw new JshipError('USAGE', `${dir} is not empty`, { hint: 'name a new or empty directory for the demo' });
      }
      const lines: string[] = [];
      const result = await runDemo(dir, (line) => {
        if (opts.json) lines.push(line);
        else process.stdout.write(`${line}\n`);
      });
      if (opts.json) emit(opts, { ...result, narration: lines }, () => []);
      if (!result.ok) process.exitCode = 1;
    });
}
