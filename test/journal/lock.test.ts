import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { tempDir, makeGroup, MiB } from '../helpers.js';

describe('one writer per group', () => {
  const dir = tempDir();

  it('refuses a second opener in the same process', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const first = await JournalGroup.open(g);
    try {
      await expect(JournalGroup.open(g)).rejects.toThrowError(expect.objectContaining({ code: 'GROUP_LOCKED', message: expect.stringContaining(`process ${process.pid}`) }));
    } finally {
      await first.close();
    }
    const again = await JournalGroup.open(g);
    await again.close();
  });

  it('refuses while another process owns the group, and takes over once it was killed', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const script = `import { openGroup } from ${JSON.stringify(new URL('../../dist/index.js', import.meta.url).href)};
      const g = await openGroup(${JSON.stringify(g)}); await g.write('a', 0, Buffer.alloc(512, 1)); process.stdout.write('OPEN\\n'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('OPEN')) resolve(); });
      child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    try {
      await expect(JournalGroup.open(g)).rejects.toThrowError(expect.objectContaining({ code: 'GROUP_LOCKED', message: expect.stringContaining(`process ${child.pid}`) }));
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
    }
    const group = await JournalGroup.open(g);
    const recs = [];
    for await (const r of group.records()) recs.push(r.header.seq);
    expect(recs).toEqual([1n]);
    await group.close();
  });
});
