import { spawn } from 'node:child_process';

/** How a hook command ended. */
export interface HookResult {
  command: string;
  /** Exit code (null when it was killed). */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** It was stopped because jship itself was interrupted. */
  interrupted: boolean;
  /** The end of what it printed (stdout and stderr, at most 4 KiB). */
  output: string;
  ok: boolean;
}

const KEEP = 4096;
const KILL_GRACE_MS = 2000;

/** A running hook: its result, and a way to stop it (its whole process group). */
export interface RunningHook {
  done: Promise<HookResult>;
  stop(): void;
}

/**
 * Runs an operator's hook command (`sh -c CMD`) in a process group of its
 * own, so that a timeout or an interrupt stops everything it started
 * (SIGTERM to the group, SIGKILL after 2 s). Never rejects: the result says
 * how it ended.
 */
export function runHook(command: string, timeoutMs: number, env: Record<string, string> = {}): RunningHook {
  const p = spawn('/bin/sh', ['-c', command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  const keep = (c: Buffer): void => {
    output = (output + c.toString('utf8')).slice(-KEEP);
  };
  p.stdout?.on('data', keep);
  p.stderr?.on('data', keep);
  let timedOut = false;
  let interrupted = false;
  let killTimer: NodeJS.Timeout | undefined;
  /** SIGTERM to the whole group (what the hook started too), SIGKILL to what is left after the grace. */
  const killGroup = (): void => {
    if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
    try {
      process.kill(-p.pid, 'SIGTERM');
    } catch { /* gone */ }
    killTimer ??= setTimeout(() => {
      try {
        process.kill(-(p.pid as number), 'SIGKILL');
      } catch { /* gone */ }
    }, KILL_GRACE_MS);
    killTimer.unref();
  };
  const timer = setTimeout(() => { timedOut = true; killGroup(); }, timeoutMs);
  const done = new Promise<HookResult>((resolve) => {
    const finish = (code: number | null, signal: string | null, spawnError?: Error): void => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      // A hook being stopped leaves nothing behind: whatever of its group ignored SIGTERM goes now.
      if ((timedOut || interrupted) && p.pid !== undefined) {
        try {
          process.kill(-p.pid, 'SIGKILL');
        } catch { /* none left */ }
      }
      // A child it left in the background may hold the pipes open: stop reading them.
      p.stdout?.destroy();
      p.stderr?.destroy();
      if (spawnError) output += spawnError.message;
      resolve({ command, code, signal, timedOut, interrupted, output: output.trim(), ok: code === 0 && !timedOut && !interrupted });
    };
    p.once('error', (e) => finish(null, null, e));
    p.once('exit', (code, signal) => finish(code, signal));
  });
  return { done, stop: () => { interrupted = true; killGroup(); } };
}

/** One line for a hook that did not succeed. */
export function hookProblem(what: string, r: HookResult, timeoutMs: number): string {
  const how = r.timedOut ? `did not finish within ${timeoutMs / 1000} s and was stopped`
    : r.interrupted ? 'was stopped by an interrupt'
      : r.code !== null ? `exited ${r.code}` : `was killed by ${r.signal}`;
  return `${what} hook \`${r.command}\` ${how}${r.output ? `: ${r.output.split('\n').slice(-3).join(' | ')}` : ''}`;
}
