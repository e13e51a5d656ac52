import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PvolWriter } from '../../src/volume/pvol-writer.js';
import { tempDir } from '../helpers.js';

describe('PvolWriter', () => {
  const dir = tempDir();

  it('writes batches in order (a later write to the same place wins) and across batch limits', async () => {
    const f = join(dir, 'v.img');
    writeFileSync(f, Buffer.alloc(1 << 20));
    const fd = openSync(f, 'r+');
    const w = new PvolWriter();
    try {
      const model = Buffer.alloc(1 << 20);
      const done: Promise<void>[] = [];
      for (let i = 0; i < 3000; i++) {
        const pos = (i * 7919 * 512) % ((1 << 20) - 4096);
        const data = Buffer.alloc(4096, i % 251);
        data.copy(model, pos);
        done.push(w.write(fd, pos, data));
      }
      await Promise.all(done);
      expect(readFileSync(f).equals(model)).toBe(true);
    } finally {
      await w.close();
      closeSync(fd);
    }
  });

  it('a turn\'s first write on an idle writer is in the file at once; the writes after it in the turn go to the thread', async () => {
    const f = join(dir, 'lone.img');
    writeFileSync(f, Buffer.alloc(64 * 1024));
    const fd = openSync(f, 'r+');
    const w = new PvolWriter();
    try {
      const first = w.write(fd, 0, Buffer.alloc(4096, 1));
      const second = w.write(fd, 8192, Buffer.alloc(4096, 2));
      // Nothing has been awaited: the first is in the file, the second waits for its batch to be sent.
      const now = readFileSync(f);
      expect(now.subarray(0, 4096).every((b) => b === 1)).toBe(true);
      expect(now.subarray(8192, 12288).every((b) => b === 0)).toBe(true);
      await Promise.all([first, second]);
      expect(readFileSync(f).subarray(8192, 12288).every((b) => b === 2)).toBe(true);
      // The next turn's first write finds the writer idle again.
      const third = w.write(fd, 16384, Buffer.alloc(4096, 3));
      expect(readFileSync(f).subarray(16384, 20480).every((b) => b === 3)).toBe(true);
      await third;
    } finally {
      await w.close();
      closeSync(fd);
    }
  });

  it('a failed write rejects with the system error, written at once or by the thread', async () => {
    const w = new PvolWriter();
    const fd = 999_999; // no such descriptor
    const direct = w.write(fd, 0, Buffer.alloc(512));
    const batched = w.write(fd, 4096, Buffer.alloc(512));
    await expect(direct).rejects.toMatchObject({ code: 'EBADF', message: expect.stringMatching(/^PVOL write: /) });
    await expect(batched).rejects.toMatchObject({ code: 'EBADF', message: expect.stringMatching(/^PVOL write: /) });
    await w.close();
    await expect(w.write(fd, 0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'GROUP_CLOSED' });
  });
});
