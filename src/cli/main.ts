import { Command, CommanderError } from 'commander';
import { JshipError } from '../core/errors.js';
import { reportError } from './output.js';
// s3:// tape stores (the SDK itself loads only when a store is used).
import '../s3/register.js';
import { registerInit } from './init.js';
import { registerStatus } from './status.js';
import { registerCheck } from './check.js';
import { registerBwlimit } from './bwlimit.js';
import { registerMount } from './mount.js';
import { registerDrill } from './drill.js';
import { registerMark } from './mark.js';
import { registerDemo } from './demo.js';
import { registerExport } from './export.js';
import { registerAck } from './ack.js';
import { registerImport } from './import.js';
import { registerVerify } from './verify.js';
import { registerTapes } from './tapes.js';
import { registerCatalog } from './catalog.js';
import { registerExpire } from './expire.js';
import { registerRestore } from './restore.js';
import { registerTimeline } from './timeline.js';
import { registerScan } from './scan.js';
import { registerServe } from './serve.js';
import { registerLink } from './link.js';
import { registerPromote } from './promote.js';
import { registerDemote } from './demote.js';

export const VERSION = '0.1.0';

/** Builds the command tree; each verb lives in its own file. */
export function buildProgram(): Command {
  const program = new Command('jship')
    .description('journal shipper for block volumes: journal every write, export to tapes, restore to any point in time')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  registerInit(program);
  registerStatus(program);
  registerCheck(program);
  registerBwlimit(program);
  registerMount(program);
  registerDrill(program);
  registerMark(program);
  registerScan(program);
  registerServe(program);
  registerLink(program);
  registerExport(program);
  registerAck(program);
  registerImport(program);
  registerVerify(program);
  registerTapes(program);
  registerCatalog(program);
  registerExpire(program);
  registerRestore(program);
  registerPromote(program);
  registerDemote(program);
  registerTimeline(program);
  registerDemo(program);
  return program;
}

/**
 * Runs the CLI. Exit codes: 0 done, 1 the work failed or was refused,
 * 2 usage (bad flag, size or time). Sets process.exitCode, never exits.
 */
export async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  // The AWS SDK warns on every run that its releases after January 2027 need Node 22; the lock file pins this one.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  // A reader that went away (| head) is not an error of ours; a tape written to a stream sees it in its own write callbacks.
  process.stdout.on('error', () => undefined);
  const program = buildProgram();
  if (json) program.configureOutput({ writeErr: () => undefined });
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help asked for (--help, --version) is success; help shown because a verb is missing (`jship`, `jship link`) is a usage error.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || (e.code === 'commander.help' && e.exitCode === 0)) {
        process.exitCode = 0;
        return;
      }
      if (json) reportError(new JshipError('USAGE', e.message.replace(/^error: /, ''), { hint: 'run jship VERB --help' }), true);
      process.exitCode = 2;
      return;
    }
    reportError(e, json);
  }
}
