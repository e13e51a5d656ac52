import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { MAX_EPOCHS, type Lineage } from '../../src/core/epoch.js';
import { RecordType, dataCrc, encodeRecord, type RecordHeader } from '../../src/core/record.js';
import { DirDestination } from '../../src/tape/destination.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { SegmentKind } from '../../src/tape/segment.js';
import { readLabel } from '../../src/tape/tape-file.js';
import { fileSource, type TapeSource } from '../../src/tape/tape-source.js';
import { MediaSetWriter } from '../../src/tape/tape-writer.js';
import { tempDir } from '../helpers.js';

const GROUP = '0f3c1d2e-4a5b-4c6d-8e7f-901a2b3c4d5e';

/** One tape of `mib` MiB of random records whose label lists `volumes`; its path. */
async function tape(dir: string, volumes: Array<{ name: string; size: number }>, mib: number, epochs?: Lineage): Promise<string> {
  const pool = new FramePool({ threads: 1 });
  try {
    const w = new MediaSetWriter({ groupId: GROUP, volumes, firstSerial: 1, prevSha256: null, destination: new DirDestination(dir), pool, ...(epochs ? { epochs } : {}) });
    for (let i = 0; i < mib; i++) {
      const data = randomBytes(1024 * 1024);
      const header: RecordHeader = {
        type: RecordType.Update, flags: 0, volume: 0, seq: BigInt(i + 1), timestamp: 1_700_000_000_000_000_000n + BigInt(i),
        offset: 0, length: data.length, dataPos: 0n, aux: 0n, dataCrc: dataCrc(data),
      };
      await w.add(SegmentKind.Update, header, encodeRecord(header), data);
    }
    const [t] = await w.finish();
    return (t as { location: string }).location;
  } finally {
    await pool.close();
  }
}

/** The file as a source that counts the bytes read from it. */
function counted(path: string): { src: TapeSource; read: () => number } {
  const f = fileSource(path);
  let n = 0;
  return {
    read: () => n,
    src: {
      where: f.where,
      size: () => f.size(),
      async* chunks(start?: number, end?: number) {
        for await (const c of f.chunks(start, end)) {
          n += c.length;
          yield c;
        }
      },
    },
  };
}

describe('a tape\'s label read alone (tape/tape-file.ts, readLabel)', () => {
  it('reads 64 KiB of a tape for its label, not the first MiB', async () => {
    const path = await tape(tempDir(), [{ name: 'db', size: 1 << 30 }], 3);
    const c = counted(path);
    const label = await readLabel(c.src);
    expect(label.volumes).toEqual([{ name: 'db', size: 1 << 30 }]);
    expect(c.read()).toBe(64 * 1024);
  });

  it('a label longer than 64 KiB (the most volumes and epochs the format allows) is read from the first MiB', async () => {
    // Random names, sizes and epoch starts: the label's frame does not compress below 64 KiB.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    const volumes = Array.from({ length: 1024 }, () => ({
      name: [...randomBytes(63)].map((b) => alphabet[b % alphabet.length]).join(''),
      size: (1 + (randomBytes(4).readUInt32LE() % 2 ** 28)) * 512,
    }));
    let start = 1n;
    const epochs = Array.from({ length: MAX_EPOCHS }, (_v, i) => ({ generation: i + 2, startSeq: String(start += BigInt(randomBytes(4).readUInt32LE())) }));
    const path = await tape(tempDir(), volumes, 2, epochs);
    const c = counted(path);
    const label = await readLabel(c.src);
    expect(label.volumes).toEqual(volumes);
    expect(label.epochs).toEqual(epochs);
    expect(c.read()).toBeGreaterThan(64 * 1024);
  });

  it('a file that is no tape is refused, with a tape error', async () => {
    const path = join(tempDir(), 'noise.tar.zst');
    writeFileSync(path, Buffer.alloc(2 * 1024 * 1024, 0x41));
    await expect(readLabel(path)).rejects.toMatchObject({ code: expect.stringMatching(/^TAPE_/) });
  });
});
