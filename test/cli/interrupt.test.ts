import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { randomBytes } from 'node:crypto';
import { openSiteGroup } from '../../src/owner/consumers.js';

/**
 * Runs the CLI under strace with every pwrite64 delayed (so that the work is
 * surely under way), interrupts it with SIGINT once `started()` holds, and
 * returns its exit code and stderr.
 */
async function interrupted(args: string[], started: () => boolean): Promise<{ code: number | null; stderr: string }> {
  const p = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=pwrite64', '-e', 'inject=pwrite64:delay_enter=50000', process.execPath, BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<number | null>((r) => p.on('close', r));
  const deadline = Date.now() + 60_000;
  while (!started()) {
    if (Date.now() > deadline) throw new Error(`never started: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const child = spawnSync('pgrep', ['-P', String(p.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  process.kill(Number(child), 'SIGINT');
  return { code: await exited, stderr };
}

describe('Ctrl-C on a long verb', () => {
  const dir = tempDir();

  it('import and restore say in one line what state they leave, exit 130, and the same command then completes', async () => {
    const g = await makeGroup(dir, { a: 32 * MiB }, { journalSize: 64 * MiB });
    const group = await openSiteGroup(g);
    for (let i = 0; i < 24; i++) await group.write('a', i * MiB, randomBytes(MiB));
    await exportTo(group, join(dir, 't'), { base: true });
    await group.close();
    const tape = join(dir, 't', readdirSync(join(dir, 't'))[0]!);
    const rep = join(dir, 'rep');
    const imp = await interrupted(['import', rep, tape], () => existsSync(join(rep, 'tapes')) && readdirSync(join(rep, 'tapes')).some((n) => n.startsWith('.incoming-')));
    expect(imp).toExit(130);
    expect(imp.stderr).toMatch(/^jship import: interrupted by SIGINT: the tapes taken before this one are stored .* Rerun the same command/m);
    const again = jshipJson('import', rep, tape);
    expect(again).toExit(0);
    expect(readdirSync(join(rep, 'tapes')).filter((n) => n.startsWith('.'))).toEqual([]);
    const out = join(dir, 'out.img');
    const rs = await interrupted(['restore', rep, '--target', out], () => existsSync(join(dir, '.out.img.jship-restore')));
    expect(rs).toExit(130);
    expect(rs.stderr).toMatch(/^jship restore: interrupted by SIGINT: new files stay under temporary names/m);
    expect(existsSync(out)).toBe(false);
    const done = jshipJson('restore', rep, '--target', out);
    expect(done).toExit(0);
    expect(existsSync(join(dir, '.out.img.jship-restore'))).toBe(false);
  });
});
