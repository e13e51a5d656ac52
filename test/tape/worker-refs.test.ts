import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { distUrl as dist, nodeModule as child, tempDir } from '../helpers.js';

describe('worker threads and the process\'s life', () => {
  const dir = tempDir();

  it('an idle frame pool or PVOL writer never closed lets the process end; one awaited keeps it alive until it answers', () => {
    const file = join(dir, 'f.bin');
    writeFileSync(file, Buffer.alloc(3 * 4096, 7));
    // Each waits for its thread's answer with nothing else to keep the process alive (an exit then would be
    // 13, "unsettled top-level await"), prints it, and is never closed: an idle worker that held the process
    // kept it running for ever (a CLI verb that failed before it used the pool it had started).
    const r = child(`
      import { openSync } from 'node:fs';
      import { FramePool } from ${dist('tape/frame-pool.js')};
      import { PvolWriter } from ${dist('volume/pvol-writer.js')};
      const fd = openSync(${JSON.stringify(file)}, 'r+');
      const pool = new FramePool();
      const leaves = await pool.fileLeaves({ fd, size: 3 * 4096, chunkSize: 4096, first: 0, count: 3, zeros: new Uint8Array(3) });
      process.stdout.write('pool ' + leaves.length + '\\n');
      const w = new PvolWriter();
      // Two writes in one turn: the second goes to the writer's thread.
      await Promise.all([w.write(fd, 0, Buffer.alloc(4096, 1)), w.write(fd, 4096, Buffer.alloc(4096, 2))]);
      process.stdout.write('pvol written\\n');
    `);
    expect(r.status, r.err).toBe(0);
    expect(r.out).toBe(['pool 3', 'pvol written', ''].join('\n'));
  });

  it('a frame pool closed while a worker\'s answer is on its way closes, and what it still owed fails', () => {
    // The answer arrived after close had begun: the pool unref'd the worker it was terminating, nothing kept the
    // process alive, and it ended with close unsettled (a CLI verb exited 0 having said nothing: jship import
    // onto a full disk, under load).
    const r = child(`
      import { FramePool } from ${dist('tape/frame-pool.js')};
      const pool = new FramePool({ threads: 1 });
      const job = (n) => { const c = pool.content(n); c.append(Buffer.alloc(n, 7)); return pool.frame('x', c, { mtime: new Date(0) }); };
      await job(4096); // the worker is up
      const owed = [job(1 << 16), job(1 << 16)];
      for (const p of owed) p.catch(() => undefined);
      // This thread is busy while the worker answers: its answers wait, unread, when close begins.
      const until = Date.now() + 300;
      while (Date.now() < until);
      await pool.close();
      process.stdout.write('closed\\n');
      for (const p of owed) process.stdout.write(await p.then(() => 'answered\\n', (e) => e.message + '\\n'));
    `);
    expect(r.status, r.err).toBe(0);
    expect(r.out).toBe(['closed', 'frame pool closed', 'frame pool closed', ''].join('\n'));
  });
});
