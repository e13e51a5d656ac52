import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { importTapes } from '../../src/replica/import.js';
import { Replica } from '../../src/replica/replica.js';
import { SegmentSource } from '../../src/replica/segment-source.js';
import type { SegmentRow } from '../../src/replica/catalog.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { writeSegmentParts, type SegmentPartsRequest } from '../../src/tape/segment-parts.js';
import { JshipError } from '../../src/core/errors.js';
import { makeGroup, MiB } from '../helpers.js';
import { exportTo } from './helpers.js';

describe('segment parts written straight into files (a restore\'s worker path)', () => {
  // One replica for every test (tempDir's is removed after each).
  const dir = mkdtempSync(join(tmpdir(), 'jship-test-parts-'));
  let replica: Replica;
  let seg: SegmentRow;
  let tape: string;
  let payload: Buffer;
  let req: (parts: number[], more?: Partial<SegmentPartsRequest>) => SegmentPartsRequest;
  const fds: number[] = [];
  const open = (path: string, flags: string): number => {
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };

  beforeAll(async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 4; i++) await group.write('a', i * MiB, randomBytes(MiB));
    await exportTo(group, join(dir, 't'), { base: true });
    await group.close();
    await importTapes(join(dir, 'rep'), [join(dir, 't')]);
    replica = await Replica.open(join(dir, 'rep'));
    seg = replica.catalog.segments().find((s) => s.kind === 'base') as SegmentRow;
    tape = replica.tapePath(replica.catalog.tapes().find((t) => t.serial === seg.serial)!.file);
    const source = new SegmentSource(replica, undefined);
    payload = await source.payload(seg);
    await source.release();
    const fd = open(tape, 'r');
    req = (parts, more = {}) => ({
      fd, offset: seg.frameOffset, length: seg.frameLength, where: `tape ${seg.serial} segment ${seg.idx}`,
      expect: { firstSeq: seg.firstSeq, lastSeq: seg.lastSeq, count: seg.records, groupId: replica.config.groupId, mediaSetId: replica.catalog.tapes()[0]!.mediaSet },
      parts: Float64Array.from(parts), ...more,
    });
  });
  afterAll(async () => {
    for (const fd of fds) closeSync(fd);
    await replica.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes each part of the records at its position, in two files, and says how many bytes', () => {
    writeFileSync(join(dir, 'x'), Buffer.alloc(0));
    writeFileSync(join(dir, 'y'), Buffer.alloc(0));
    const [x, y] = [open(join(dir, 'x'), 'r+'), open(join(dir, 'y'), 'r+')];
    const n = writeSegmentParts(req([x, 4096, 64, 1000, y, 0, 5000, 70_000, x, 0, payload.length - 10, 10]));
    expect(n).toBe(71_010);
    const got = readFileSync(join(dir, 'x'));
    expect(got.subarray(0, 10).equals(payload.subarray(payload.length - 10))).toBe(true);
    expect(got.subarray(4096, 5096).equals(payload.subarray(64, 1064))).toBe(true);
    expect(got.subarray(10, 4096).equals(Buffer.alloc(4086))).toBe(true);
    expect(readFileSync(join(dir, 'y')).equals(payload.subarray(5000, 75_000))).toBe(true);
  });

  it('refuses a segment that is not what the catalogue says, a frame cut short or damaged, and a part past the records, as TAPE_DAMAGED', () => {
    const out = open(join(dir, 'x'), 'r+');
    const fails = (r: SegmentPartsRequest, message: RegExp): void => {
      let err: unknown;
      try {
        writeSegmentParts(r);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(JshipError);
      expect((err as JshipError).code).toBe('TAPE_DAMAGED');
      expect((err as JshipError).message).toMatch(message);
    };
    const ok = req([out, 0, 0, 10]);
    fails({ ...ok, expect: { ...ok.expect, lastSeq: ok.expect.lastSeq + 1n } }, /segment \d+: the segment differs from the catalogue/);
    fails({ ...ok, expect: { ...ok.expect, groupId: '00000000-0000-4000-8000-000000000000' } }, /differs from the catalogue/);
    fails({ ...ok, offset: ok.offset + 1 }, /cannot be read: not one whole zstd frame/);
    fails({ ...ok, length: ok.length + 10_000_000 }, /is cut short/);
    fails(req([out, 0, payload.length - 10, 11]), /past the segment's \d+ bytes of records/);
  });

  it('a part that cannot be written fails with the system\'s error and the target\'s descriptor, here and through the pool\'s worker', async () => {
    const ro = open(join(dir, 'x'), 'r');
    expect(() => writeSegmentParts(req([ro, 0, 0, 10]))).toThrow(expect.objectContaining({ code: 'EBADF', targetFd: ro }));
    const pool = new FramePool({ threads: 1 });
    try {
      await expect(pool.writeParts(req([ro, 0, 0, 10]))).rejects.toMatchObject({ code: 'EBADF', targetFd: ro, syscall: 'write' });
      const bad = req([ro, 0, 0, 10]);
      const damaged = await pool.writeParts({ ...bad, expect: { ...bad.expect, count: bad.expect.count + 1 } }).catch((e: unknown) => e);
      expect(damaged).toBeInstanceOf(JshipError);
      expect(damaged).toMatchObject({ code: 'TAPE_DAMAGED', hint: expect.stringMatching(/catalog --rebuild/) });
      const rw = open(join(dir, 'x'), 'r+');
      expect(await pool.writeParts(req([rw, 100, 0, 4096]))).toBe(4096);
      expect(readFileSync(join(dir, 'x')).subarray(100, 4196).equals(payload.subarray(0, 4096))).toBe(true);
    } finally {
      await pool.close();
    }
  });
});
