import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatTime, parseDuration } from '../core/time.js';
import { hookProblem, runHook, type HookResult, type RunningHook } from '../io/hooks.js';
import { onGroup, whenNoOneShot } from '../owner/on-group.js';
import { oneShotWait } from './waiting.js';
import { emit, type CommonOptions } from './output.js';

interface MarkOptions extends CommonOptions {
  execBefore?: string;
  execAfter?: string;
  hookTimeout: string;
  wait: string;
}

export function registerMark(program: Command): void {
  program
    .command('mark')
    .description('journal a named restore point (a marker record); names are unique within the group; works while jship serve runs')
    .argument('<GROUP_DIR>', 'the journal group')
    .argument('<NAME>', 'name of the restore point, e.g. before-upgrade')
    .option('--exec-before <CMD>', 'run CMD first (sh -c, in this process, e.g. fsfreeze --freeze /mnt/db); if it fails, no marker is taken')
    .option('--exec-after <CMD>', 'run CMD last, always: also when the marker or the before-hook failed (e.g. fsfreeze --unfreeze /mnt/db)')
    .option('--hook-timeout <DURATION>', 'stop a hook (its whole process group) that runs longer', '60s')
    .option('--wait <DURATION>', 'wait this long for an export or a scan that holds the group on its own (no jship serve) to end, before the before-hook runs; then fail (GROUP_LOCKED)', '5m')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, name: string, opts: MarkOptions) => {
      const timeoutMs = Number(parseDuration(opts.hookTimeout, '--hook-timeout') / 1_000_000n);
      if (timeoutMs <= 0) throw new JshipError('USAGE', '--hook-timeout must be more than 0', { hint: 'e.g. --hook-timeout 30s' });
      const waitMs = Number(parseDuration(opts.wait, '--wait') / 1_000_000n);
      // Waited for before any hook runs (the before-hook may freeze a file system: never frozen while this
      // waits), and a wait that runs out runs no hook at all.
      await whenNoOneShot(dir, oneShotWait('mark', waitMs));
      const env = { JSHIP_GROUP: dir, JSHIP_MARKER: name };
      const hooks: { before?: HookResult; after?: HookResult } = {};
      // An interrupt stops the running hook; the after-hook still runs (an application is never left quiesced).
      let current: RunningHook | undefined;
      let signal: NodeJS.Signals | undefined;
      const onSignal = (sig: NodeJS.Signals): void => { signal ??= sig; current?.stop(); };
      process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
      const run = async (cmd: string): Promise<HookResult> => {
        current = runHook(cmd, timeoutMs, env);
        try {
          return await current.done;
        } finally {
          current = undefined;
        }
      };
      let marked: { seq: bigint; timestamp: bigint } | undefined;
      let failure: unknown;
      try {
        if (opts.execBefore !== undefined) {
          hooks.before = await run(opts.execBefore);
          if (!hooks.before.ok) throw new JshipError('HOOK_FAILED', `${hookProblem('the before', hooks.before, timeoutMs)}: no marker was taken`, { hint: 'fix the hook and run mark again (the after-hook ran)' });
        }
        if (signal) throw new JshipError('HOOK_FAILED', `interrupted by ${signal}: no marker was taken`, { hint: 'run mark again' });
        marked = await onGroup(dir, (g) => g.mark(name), { op: 'mark', args: { name } });
      } catch (e) {
        failure = e;
      } finally {
        if (opts.execAfter !== undefined) {
          // Run to its end even if an interrupt came: this is the hook that undoes the before-hook.
          const saved = signal;
          signal = undefined;
          hooks.after = await run(opts.execAfter);
          signal ??= saved;
        }
        process.removeListener('SIGINT', onSignal).removeListener('SIGTERM', onSignal);
      }
      if (failure) {
        if (!hooks.after || hooks.after.ok) throw failure;
        const e = failure as Error;
        throw new JshipError('HOOK_FAILED', `${e.message}; and ${hookProblem('the after', hooks.after, timeoutMs)}`, {
          hint: 'see to what the after-hook should have done (e.g. unfreeze the file system) by hand', cause: failure,
        });
      }
      const m = marked as { seq: bigint; timestamp: bigint };
      if (hooks.after && !hooks.after.ok) {
        throw new JshipError('HOOK_FAILED', `marked "${name}" at seq ${m.seq}, but ${hookProblem('the after', hooks.after, timeoutMs)}`, {
          hint: 'the restore point exists; see to what the after-hook should have done (e.g. unfreeze the file system) by hand',
          details: { seq: m.seq.toString(), timestamp: formatTime(m.timestamp) },
        });
      }
      emit(opts, { name, seq: m.seq, ts: m.timestamp, hooks }, () => [
        `marked "${name}" at seq ${m.seq}, ${formatTime(m.timestamp)}${hooks.before || hooks.after ? ` (hooks: ${[hooks.before ? 'before ok' : '', hooks.after ? 'after ok' : ''].filter(Boolean).join(', ')})` : ''}`,
      ]);
      if (signal) process.exitCode = signal === 'SIGINT' ? 130 : 143;
    });
}
