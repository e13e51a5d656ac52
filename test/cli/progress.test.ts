import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { BIN, KiB, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';

/** A verb run on a pseudo-terminal (util-linux `script`), as an operator sees it: the frames of its progress bar. */
function onTty(args: string[]): string[] {
  const cmd = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  expect(r).toExit(0);
  return r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n').split(/[\r\n]/).filter((l) => /\[[░█]+\]/.test(l));
}

describe('progress on a terminal', () => {
  const dir = tempDir();

  it('restore counts segments and says so (no bytes); no rate or ETA is shown before there is one', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 128; i++) await group.write('a', i * 64 * KiB, randomBytes(64 * KiB));
    await group.close();
    expect(jshipJson('export', g, '--to', `${join(dir, 'tapes')}/`, '--base')).toExit(0);
    expect(jshipJson('import', join(dir, 'rep'), join(dir, 'tapes'))).toExit(0);
    const frames = onTty(['restore', join(dir, 'rep'), '--target', join(dir, 'out.img')]);
    expect(frames.length).toBeGreaterThan(0);
    for (const f of frames) {
      expect(f).toMatch(/^restoring \[[░█]+\] \d+% \d+\/\d+ segments (\d+(\.\d)?\/s )?ETA /);
      expect(f).not.toMatch(/\bB\b|B\/s/);
      // A rate and an ETA come together, or neither.
      expect(/\/s ETA [\d.]+ (s|min|h|d)$/.test(f) || /segments ETA …$/.test(f)).toBe(true);
    }
    expect(frames[0]).toMatch(/ETA …/);
    // What it says when done names the tapes it read by serial (it printed "[object Object]" for each).
    const text = spawnSync(process.execPath, [BIN, 'restore', join(dir, 'rep'), '--target', join(dir, 'again.img')], { encoding: 'utf8' });
    expect(text).toExit(0);
    expect(text.stdout).toMatch(/ records in \d+ segments of tapes 1(, 2)*\n/);
    expect(text.stdout).not.toMatch(/object Object/);
  });

  it('a command whose output is not a terminal does not load cli-progress (6 ms of every start; the bar above still shows on one)', () => {
    const main = new URL('../../dist/cli/main.js', import.meta.url).href;
    // Node's CommonJS cache once the verb has run: cli-progress comes in through require, or not at all.
    const script = `import('${main}').then(async (m) => { await m.main(['node', 'jship', 'status', '${join(dir, 'none')}', '--json']); process.stderr.write('loaded=' + Object.keys(require.cache).some((k) => k.includes('/cli-progress/'))); })`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toMatch(/loaded=false$/);
  });
});
