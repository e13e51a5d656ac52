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

  it('a failed write rejects its batch with the system error', async () => {
    const w = new PvolWriter();
    const fd = 999_999; // no such descriptor
    await expect(w.write(fd, 0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'EBADF' });
    await w.close();
    await expect(w.write(fd, 0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'GROUP_CLOSED' });
  });
});
