import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { jshipJson, makeGroup, tempDir, BIN, MiB } from '../helpers.js';
import { until } from '../link/helpers.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Quiesce hooks around `mark`: before → marker → after, and the after-hook on every failure path. */
describe('mark --exec-before / --exec-after', () => {
  const dir = tempDir();
  const jship = `${process.execPath} ${BIN}`;

  it('runs before, then journals the marker, then after; each hook sees the group as it is at its turn', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const log = join(dir, 'order.log');
    const r = jshipJson('mark', g, 'quiet',
      '--exec-before', `echo "before $JSHIP_MARKER $(${jship} status ${g} --json | grep -o '"markers":[0-9]*')" >> ${log}`,
      '--exec-after', `echo "after $(${jship} status ${g} --json | grep -o '"markers":[0-9]*')" >> ${log}`);
    expect(r).toExit(0);
    expect(readFileSync(log, 'utf8')).toBe('before quiet "markers":0\nafter "markers":1\n');
    expect(r.out.hooks.before).toMatchObject({ code: 0, ok: true });
    expect(r.out.hooks.after).toMatchObject({ code: 0, ok: true });
  });

  it('a failed before-hook: no marker, the after-hook runs, exit 1; a failed marker: the after-hook runs; a failed after-hook: the marker stays, exit 1', async () => {
    const g = await makeGroup(join(dir, 'f'), { a: 1 * MiB });
    const after = join(dir, 'after.log');
    const failed = jshipJson('mark', g, 'one', '--exec-before', 'echo frozen-not; exit 3', '--exec-after', `echo after >> ${after}`);
    expect(failed).toExit(1);
    expect(failed.out.error.code).toBe('HOOK_FAILED');
    expect(failed.out.error.message).toBe('the before hook `echo frozen-not; exit 3` exited 3: frozen-not: no marker was taken');
    expect(jshipJson('status', g).out.markers).toBe(0);
    expect(readFileSync(after, 'utf8')).toBe('after\n');

    expect(jshipJson('mark', g, 'one')).toExit(0);
    const dup = jshipJson('mark', g, 'one', '--exec-after', `echo after >> ${after}`);
    expect(dup).toExit(1);
    expect(dup.out.error.code).toBe('MARKER_EXISTS');
    expect(readFileSync(after, 'utf8')).toBe('after\nafter\n');

    const late = jshipJson('mark', g, 'two', '--exec-after', 'exit 4');
    expect(late).toExit(1);
    expect(late.out.error.message).toMatch(/^marked "two" at seq 2, but the after hook `exit 4` exited 4$/);
    expect(jshipJson('status', g).out.markers).toBe(2);
  });

  it('a before-hook past --hook-timeout: its whole process group is stopped, no marker, the after-hook runs', async () => {
    const g = await makeGroup(join(dir, 't'), { a: 1 * MiB });
    const pidFile = join(dir, 'sleeper.pid');
    const after = join(dir, 'after-t.log');
    const r = jshipJson('mark', g, 'slow', '--hook-timeout', '300ms', '--exec-before', `sleep 600 & echo $! > ${pidFile}; wait`, '--exec-after', `echo after >> ${after}`);
    expect(r).toExit(1);
    expect(r.out.error.message).toMatch(/did not finish within 0\.3 s and was stopped: no marker was taken$/);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await until('the hook\'s child to be gone', () => !alive(pid), 10_000);
    expect(readFileSync(after, 'utf8')).toBe('after\n');
    expect(jshipJson('status', g).out.markers).toBe(0);
    expect(jshipJson('mark', g, 'x', '--hook-timeout', '0s')).toExit(2);
    expect(existsSync(join(g, 'lock'))).toBe(false);
  });
});
