import { Command, CommanderError } from 'commander';
import { JshipError } from '../core/errors.js';
import { reportError } from './output.js';
import { closeUntakenPool, startFramePool } from './early-pool.js';
import { failIfUnfinished } from './unfinished.js';
// s3:// tape stores (the SDK itself loads only when a store is used).
import '../s3/register.js';
export const VERSION = '0.1.0';

/** Registers one verb's command (options, help, action) on the program. */
type Register = (program: Command) => void;

/**
 * Every verb, in the order help lists them, each in its own file, which is
 * loaded only when needed: a command loads its own verb's modules, not all
 * of them (start-up was a tenth of a short restore's time).
 */
const VERBS: ReadonlyArray<readonly [string, () => Promise<Register>]> = [
  ['init', async () => (await import('./init.js')).registerInit],
  ['status', async () => (await import('./status.js')).registerStatus],
  ['check', async () => (await import('./check.js')).registerCheck],
  ['bwlimit', async () => (await import('./bwlimit.js')).registerBwlimit],
  ['mount', async () => (await import('./mount.js')).registerMount],
  ['drill', async () => (await import('./drill.js')).registerDrill],
  ['mark', async () => (await import('./mark.js')).registerMark],
  ['scan', async () => (await import('./scan.js')).registerScan],
  ['serve', async () => (await import('./serve.js')).registerServe],
  ['link', async () => (await import('./link.js')).registerLink],
  ['export', async () => (await import('./export.js')).registerExport],
  ['ack', async () => (await import('./ack.js')).registerAck],
  ['import', async () => (await import('./import.js')).registerImport],
  ['verify', async () => (await import('./verify.js')).registerVerify],
  ['tapes', async () => (await import('./tapes.js')).registerTapes],
  ['catalog', async () => (await import('./catalog.js')).registerCatalog],
  ['expire', async () => (await import('./expire.js')).registerExpire],
  ['restore', async () => (await import('./restore.js')).registerRestore],
  ['promote', async () => (await import('./promote.js')).registerPromote],
  ['demote', async () => (await import('./demote.js')).registerDemote],
  ['timeline', async () => (await import('./timeline.js')).registerTimeline],
  ['demo', async () => (await import('./demo.js')).registerDemo],
];

/** Verbs whose frame workers start before their modules load (cli/early-pool.ts). */
const EARLY_POOL = new Set(['restore']);

/**
 * Builds the command tree: with `verb` (the word after `jship`, when it
 * names one), that verb alone; for --version, none; otherwise every verb
 * (help lists them all, and an unknown word is refused with the list).
 */
export async function buildProgram(verb?: string): Promise<Command> {
  const program = new Command('jship')
    .description('journal shipper for block volumes: journal every write, export to tapes, restore to any point in time')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  const only = VERBS.find(([name]) => name === verb);
  const verbs = only ? [only] : verb === '--version' || verb === '-V' ? [] : VERBS;
  for (const register of await Promise.all(verbs.map(([, load]) => load()))) register(program);
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
  if (EARLY_POOL.has(argv[2] ?? '') && !argv.includes('--help') && !argv.includes('-h')) startFramePool();
  const settled = failIfUnfinished(json);
  try {
    await run(argv, json);
  } finally {
    await closeUntakenPool();
    settled();
  }
}

async function run(argv: string[], json: boolean): Promise<void> {
  const program = await buildProgram(argv[2]);
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
