import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatSize, parseSize } from '../../src/core/sizes.js';
import { formatTime, parseTime } from '../../src/core/time.js';
import { parseVolumeSpec } from '../../src/core/volume-spec.js';
import { planLayout, ringPieces, MIN_JOURNAL_SIZE } from '../../src/core/journal-layout.js';

describe('sizes', () => {
  it('parses suffixes as powers of 1024', () => {
    expect(parseSize('512')).toBe(512);
    expect(parseSize('4K')).toBe(4096);
    expect(parseSize('1m')).toBe(1048576);
    expect(parseSize('2G')).toBe(2 * 1024 ** 3);
    expect(parseSize('1T')).toBe(1024 ** 4);
    expect(parseSize('3GiB')).toBe(3 * 1024 ** 3);
  });
  it('refuses what is not a size, with a usage code', () => {
    for (const s of ['', 'abc', '1.5G', '-1', '1X', '10PB', '99999999999T']) {
      expect(() => parseSize(s)).toThrowError(expect.objectContaining({ code: 'BAD_SIZE' }));
    }
  });
  it('formats for people', () => {
    expect(formatSize(100)).toBe('100 B');
    expect(formatSize(1536)).toBe('1.50 KiB');
    expect(formatSize(1024 ** 3)).toBe('1.00 GiB');
  });
});

describe('time', () => {
  it('parses ISO 8601 with zones and fractions down to nanoseconds', () => {
    expect(parseTime('1970-01-01T00:00:00Z')).toBe(0n);
    expect(parseTime('2026-11-24T23:00:00Z')).toBe(BigInt(Date.UTC(2026, 10, 24, 23)) * 1_000_000n);
    expect(parseTime('2026-11-24T23:00:00.123456789Z') - parseTime('2026-11-24T23:00:00Z')).toBe(123456789n);
    expect(parseTime('2026-11-25T00:00:00+01:00')).toBe(parseTime('2026-11-24T23:00:00Z'));
    expect(parseTime('2026-11-24T18:00:00-0500')).toBe(parseTime('2026-11-24T23:00:00Z'));
    expect(parseTime('@1795598559.5')).toBe(1795598559500000000n);
    expect(parseTime('@0')).toBe(0n);
  });
  it('refuses a time without a zone, naming the fix', () => {
    expect(() => parseTime('2026-11-24T23:00:00')).toThrowError(/no time zone/);
    expect(() => parseTime('2026-11-24')).toThrowError(expect.objectContaining({ code: 'BAD_TIME' }));
  });
  it('refuses impossible dates and garbage', () => {
    for (const s of ['2026-02-30T00:00:00Z', '2026-13-01T00:00:00Z', '2026-11-24T24:00:00Z', 'yesterday', '@-5', '@1.1234567891']) {
      expect(() => parseTime(s), s).toThrowError(expect.objectContaining({ code: 'BAD_TIME' }));
    }
  });
  it('formats and parses back any instant (property)', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 4102444800n * 1_000_000_000n }), (ns) => {
      expect(parseTime(formatTime(ns))).toBe(ns);
    }));
  });
});

describe('volume specs', () => {
  it('parses NAME=PATH[:SIZE] and volume groups', () => {
    expect(parseVolumeSpec('data=/srv/d.img:10G')).toEqual({ name: 'data', extents: [{ path: '/srv/d.img', size: 10 * 1024 ** 3 }] });
    expect(parseVolumeSpec('data=/srv/d.img')).toEqual({ name: 'data', extents: [{ path: '/srv/d.img' }] });
    expect(parseVolumeSpec('vg=/dev/sdb,/a:b/c.img:1M')).toEqual({ name: 'vg', extents: [{ path: '/dev/sdb' }, { path: '/a:b/c.img', size: 1048576 }] });
  });
  it('refuses malformed specs', () => {
    for (const s of ['data', '=x', 'data=', 'bad name=/x', 'a=/x,,/y', '-a=/x']) {
      expect(() => parseVolumeSpec(s), s).toThrowError(expect.objectContaining({ code: 'BAD_VOLUME_SPEC' }));
    }
  });
});

describe('journal layout', () => {
  it('splits a journal into aligned, non-overlapping areas', () => {
    for (const size of [MIN_JOURNAL_SIZE, 16 * 1024 * 1024 + 1234, 1024 ** 3]) {
      const l = planLayout(size);
      expect(l.metaOffset).toBe(8192);
      expect(l.dataOffset).toBe(l.metaOffset + l.metaSlots * 64);
      expect(l.dataOffset % 4096).toBe(0);
      expect(l.dataSize % 4096).toBe(0);
      expect(l.dataOffset + l.dataSize).toBeLessThanOrEqual(size);
      expect(l.dataSize).toBeGreaterThan(size / 2);
    }
  });
  it('refuses a journal below the minimum', () => {
    expect(() => planLayout(MIN_JOURNAL_SIZE - 1)).toThrowError(expect.objectContaining({ code: 'JOURNAL_TOO_SMALL' }));
  });
  it('maps ring ranges to one piece, or two when they wrap', () => {
    expect(ringPieces(100, 10, 3n, 5)).toEqual([{ pos: 103, len: 5 }]);
    expect(ringPieces(100, 10, 27n, 5)).toEqual([{ pos: 107, len: 3 }, { pos: 100, len: 2 }]);
    expect(ringPieces(100, 10, 20n, 10)).toEqual([{ pos: 100, len: 10 }]);
  });
});
