import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe } from 'vitest';

import { fileSource, streamSource, type TapeSource } from '../../src/tape/tape-source.js';
import { sourceContract } from './source-contract.js';
import { scratch } from './destination-contract.js';

/** The reference backend: a tape in memory, handed out in uneven chunks. */
function memorySource(bytes: Buffer, where: string): TapeSource {
  return {
    where,
    size: async () => bytes.length,
    async *chunks(start = 0, end = bytes.length - 1) {
      for (let at = start, n = 1; at <= end; at += n, n = n * 3 + 1) yield bytes.subarray(at, Math.min(at + n, end + 1));
    },
  };
}

/** Uneven pieces, as a pipe or a drive hands them on (1 byte, 7, 4 KiB + 1, 64 KiB, …). */
function* pieces(bytes: Buffer): Generator<Buffer> {
  const sizes = [1, 7, 4097, 65536];
  for (let at = 0, i = 0; at < bytes.length; at += sizes[i++ % sizes.length] as number) yield bytes.subarray(at, at + (sizes[i % sizes.length] as number));
}

describe('tape sources: one contract (tape/tape-source.ts)', () => {
  const next = scratch();

  sourceContract('memory', async (bytes, name) => ({ source: memorySource(bytes, `memory:${name}`), once: false }));

  sourceContract('file', async (bytes, name) => {
    const dir = next();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, name), bytes);
    return { source: fileSource(join(dir, name)), once: false };
  });

  sourceContract('stream (a pipe, a drive)', async (bytes, name) => ({ source: streamSource(Readable.from(pieces(bytes)), `stdin:${name}`), once: true }));
});
