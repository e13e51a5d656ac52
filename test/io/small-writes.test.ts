import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { SMALL_WRITE, writeFullySync } from '../../src/io/files.js';
import { tempDir } from '../helpers.js';

// Every write(2) the helper makes, seen (and made) through node:fs.
const fs = vi.hoisted(() => ({ lengths: [] as number[] }));
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return {
    ...real,
    writeSync: (fd: number, b: Uint8Array, off: number, len: number, pos: number) => {
      fs.lengths.push(len);
      return real.writeSync(fd, b, off, len, pos);
    },
  };
});

/** A remote tape's copy goes in 32 KiB writes (files.ts SMALL_WRITE: larger ones cost the kernel more here). */
describe('writeFullySync in pieces', () => {
  const dir = tempDir();

  it('writes an 8 MiB range and a tail in writes of SMALL_WRITE at most, each where it belongs', () => {
    const data = randomBytes(8 * 1024 * 1024 + 1234);
    const fd = openSync(join(dir, 'f'), 'w');
    fs.lengths.length = 0;
    writeFullySync(fd, data, 5, SMALL_WRITE);
    closeSync(fd);
    expect(SMALL_WRITE).toBe(32 * 1024);
    expect(fs.lengths.length).toBe(257);
    expect(fs.lengths.slice(0, 256).every((n) => n === SMALL_WRITE)).toBe(true);
    expect(fs.lengths[256]).toBe(1234);
    const back = readFileSync(join(dir, 'f'));
    expect(back.length).toBe(data.length + 5);
    expect(back.subarray(5).equals(data)).toBe(true);
  });
});
