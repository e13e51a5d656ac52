import { describe, expect, it } from 'vitest';
import { decompress } from 'zstd-napi';
import { scanFrame } from '../../src/core/zstd-frames.js';
import { GROUP_FRAMES, decodeParityHeader, groupFits, parityShards, rawZstdFrame } from '../../src/tape/parity.js';

const frame = { entry: 'segments/00000001.jrs', offset: 400, length: 1000, sha256: 'c'.repeat(64) };
const header = { format: 'jship-parity', version: 1, number: 1, shardBytes: 1000, frames: [frame], parity: ['d'.repeat(64)] };
const enc = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

describe('parity codec', () => {
  it('golden bytes: a stored zstd frame (magic, 0xE0, content size u64 LE, raw blocks of at most 128 KiB)', () => {
    const f = rawZstdFrame(Buffer.from('abc'));
    expect(f.toString('hex')).toBe('28b52ffd' + 'e0' + '0300000000000000' + '190000' + '616263');
    const big = rawZstdFrame(Buffer.alloc(128 * 1024 + 5, 7));
    expect(scanFrame(big, 0)).toEqual({ kind: 'frame', length: big.length, contentSize: 128 * 1024 + 5 });
    expect(big.readUIntLE(13, 3)).toBe((128 * 1024) << 3); // first block: not last, raw, 128 KiB
    expect(decompress(big).equals(Buffer.alloc(128 * 1024 + 5, 7))).toBe(true);
    expect(decompress(rawZstdFrame(Buffer.alloc(0))).length).toBe(0);
  });

  it('shares and group limits', () => {
    expect(parityShards(20, 10)).toBe(2);
    expect(parityShards(3, 10)).toBe(1);
    expect(parityShards(20, 25)).toBe(5);
    expect(parityShards(20, 100)).toBe(20);
    expect(groupFits(GROUP_FRAMES, 0, 0, 10)).toBe(true);
    expect(groupFits(GROUP_FRAMES + 1, 0, 0, 10)).toBe(false);
    expect(groupFits(2, 65 * 1024 * 1024, 1, 10)).toBe(false);
    expect(groupFits(20, 1, 30 * 1024 * 1024, 10)).toBe(false); // 2 shards of 30 MiB pass the 48 MiB of parity a frame may hold
  });

  it('a parity header is decoded whole and every field checked', () => {
    expect(decodeParityHeader(enc(header), 'p')).toEqual(header);
    for (const [why, bad] of [
      ['not JSON', Buffer.from('{')],
      ['format', enc({ ...header, format: 'x' })],
      ['number', enc({ ...header, number: 0 })],
      ['shardBytes', enc({ ...header, shardBytes: 0 })],
      ['no frames', enc({ ...header, frames: [] })],
      ['too many frames', enc({ ...header, frames: Array(GROUP_FRAMES + 1).fill(frame) })],
      ['frame longer than a shard', enc({ ...header, frames: [{ ...frame, length: 1001 }] })],
      ['frame entry', enc({ ...header, frames: [{ ...frame, entry: '../etc/passwd' }] })],
      ['frame sha', enc({ ...header, frames: [{ ...frame, sha256: 'x' }] })],
      ['no parity', enc({ ...header, parity: [] })],
      ['too much parity', enc({ ...header, shardBytes: 30 * 1024 * 1024, frames: [{ ...frame, length: 1 }], parity: ['d'.repeat(64), 'e'.repeat(64)] })],
    ] as const) {
      expect(() => decodeParityHeader(bad, 'p'), why).toThrow(/parity header/);
    }
  });
});
