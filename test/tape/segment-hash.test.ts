import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { hashSegment, parseSumLine, segmentHashOf, segmentHashReady, sumEntryAlgorithm, sumEntryName, sumLine } from '../../src/tape/segment-hash.js';
import { decodeTrailer, encodeTrailer, type SegmentInfo, type TapeTrailer } from '../../src/tape/label.js';
import { tempDir } from '../helpers.js';

const segment = (hash: string): SegmentInfo => ({ name: 'segments/00000001.jrs', kind: 'update', hash, records: 3, firstSeq: '1', lastSeq: '3', firstTs: '10', lastTs: '30', bytes: 400 });
const trailer = (segments: SegmentInfo[]): TapeTrailer => ({
  format: 'jship-tape-trailer', version: 1, serial: 1, mediaSet: { id: '00000000-0000-4000-8000-000000000001', index: 0, last: true },
  records: 3, bytes: 300, updates: { firstSeq: '1', lastSeq: '3', firstTs: '10', lastTs: '30' }, base: null, markers: [], segments,
});

describe('segment hashes', () => {
  const dir = tempDir();
  beforeAll(() => segmentHashReady());

  it('an XXH3-128 hash asked for before the hasher is ready is refused, never a wrong hash', async () => {
    // A fresh copy of the module: its hasher is not made until segmentHashReady() is called.
    vi.resetModules();
    const fresh = await import('../../src/tape/segment-hash.js');
    expect(() => fresh.hashSegment('xxh128', Buffer.from('hello'))).toThrow(/segmentHashReady/);
    expect(fresh.hashSegment('sha256', Buffer.from('hello'))).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    await fresh.segmentHashReady();
    expect(fresh.hashSegment('xxh128', Buffer.from('hello'))).toBe('b5e9c1ad071b3e7fc779cfaa5e523818');
  });

  it('XXH3-128 is what xxhsum -H2 prints, and xxhsum -c accepts the sum entry as written; SHA-256 what sha256sum prints', () => {
    // Golden values (xxhsum 0.8.1, coreutils sha256sum).
    expect(hashSegment('xxh128', Buffer.from('hello'))).toBe('b5e9c1ad071b3e7fc779cfaa5e523818');
    expect(hashSegment('xxh128', Buffer.alloc(0))).toBe('99aa06d3014798d86001c324468d497f');
    expect(hashSegment('sha256', Buffer.from('hello'))).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    // Sizes across XXH3's code paths (≤16, ≤128, ≤240 bytes, then stripes and blocks), against the real tool.
    const x = join(dir, 'x');
    mkdirSync(join(x, 'segments'), { recursive: true });
    const sums: Buffer[] = [];
    for (const [i, n] of [1, 16, 17, 128, 129, 240, 241, 1024, 65_536, 1_048_583].entries()) {
      const name = `segments/${String(i + 1).padStart(8, '0')}.jrs`;
      const bytes = randomBytes(n);
      writeFileSync(join(x, name), bytes);
      const hash = hashSegment('xxh128', bytes);
      expect(execFileSync('xxhsum', ['-H2', name], { cwd: x, encoding: 'utf8' })).toBe(`${hash}  ${name}\n`);
      sums.push(sumLine(hash, name));
    }
    writeFileSync(join(x, 'all.xxh128'), Buffer.concat(sums));
    expect(execFileSync('xxhsum', ['-c', 'all.xxh128'], { cwd: x, encoding: 'utf8' }).match(/: OK/g)).toHaveLength(10);
  });

  it('the algorithm follows the tape version; sum entries are named and parsed by algorithm', () => {
    expect([2, 3, 4].map(segmentHashOf)).toEqual(['sha256', 'sha256', 'xxh128']);
    expect(sumEntryName('segments/00000007.jrs', 'xxh128')).toBe('segments/00000007.xxh128');
    expect(sumEntryName('segments/00000007.jrs', 'sha256')).toBe('segments/00000007.sha256');
    expect(sumEntryAlgorithm('segments/00000007.xxh128', 'segments/00000007.jrs')).toBe('xxh128');
    expect(sumEntryAlgorithm('segments/00000007.sha256', 'segments/00000007.jrs')).toBe('sha256');
    expect(sumEntryAlgorithm('segments/00000008.xxh128', 'segments/00000007.jrs')).toBeUndefined();
    expect(sumEntryAlgorithm('segments/00000007.md5', 'segments/00000007.jrs')).toBeUndefined();
    const h = 'a'.repeat(32);
    expect(parseSumLine(sumLine(h, 'segments/00000001.jrs'), 'xxh128')).toBe(h);
    // A line of the other algorithm's length, an upper-case or short hash, one space: not a sum line.
    expect(parseSumLine(sumLine('a'.repeat(64), 'x'), 'xxh128')).toBeUndefined();
    expect(parseSumLine(sumLine(h, 'x'), 'sha256')).toBeUndefined();
    expect(parseSumLine(Buffer.from(`${'A'.repeat(32)}  x\n`), 'xxh128')).toBeUndefined();
    expect(parseSumLine(Buffer.from(`${h} x\n`), 'xxh128')).toBeUndefined();
  });

  it('the trailer carries each segment\'s hash under its algorithm\'s key, and reads either back; anything else is refused', () => {
    const xxh = 'c'.repeat(32);
    const bytes = encodeTrailer(trailer([segment(xxh)]));
    const wire = JSON.parse(bytes.toString('utf8')) as { segments: Array<Record<string, unknown>> };
    expect(Object.keys(wire.segments[0] as object)).toEqual(['name', 'kind', 'xxh128', 'records', 'firstSeq', 'lastSeq', 'firstTs', 'lastTs', 'bytes']);
    expect(decodeTrailer(bytes, 't')).toEqual(trailer([segment(xxh)]));
    // A version-2/3 trailer (sha256 key) reads into the same shape.
    const old = encodeTrailer(trailer([segment('d'.repeat(64))]), 'sha256');
    expect(JSON.parse(old.toString('utf8')).segments[0].sha256).toBe('d'.repeat(64));
    expect(decodeTrailer(old, 't').segments[0]?.hash).toBe('d'.repeat(64));
    const bad = (seg: Record<string, unknown>): unknown => {
      try {
        return decodeTrailer(Buffer.from(JSON.stringify({ ...wire, segments: [seg] })), 't');
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    const { xxh128: _x, ...none } = wire.segments[0] as Record<string, unknown>;
    expect(bad(none)).toBe('TAPE_BAD_LABEL');
    expect(bad({ ...none, xxh128: xxh, sha256: 'd'.repeat(64) })).toBe('TAPE_BAD_LABEL');
    expect(bad({ ...none, xxh128: 'd'.repeat(64) })).toBe('TAPE_BAD_LABEL');
    expect(bad({ ...none, sha256: xxh })).toBe('TAPE_BAD_LABEL');
    expect(bad({ ...none, xxh128: 12 })).toBe('TAPE_BAD_LABEL');
  });
});
