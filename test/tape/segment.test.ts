import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FrameCompressor } from '../../src/tape/zstd.js';
import { MAX_SEGMENT_PAYLOAD, SegmentKind, decodeSegmentHeader, encodeSegmentHeader, expectSegment, recordsPayload, type SegmentHeader } from '../../src/tape/segment.js';

const header = (o: Partial<SegmentHeader> = {}): SegmentHeader => ({
  kind: SegmentKind.Update, encrypted: true, compressed: true, count: 1, firstSeq: 1n, lastSeq: 1n, firstTs: 1n, lastTs: 1n,
  payloadBytes: 0, number: 1, mediaSetId: '00000000-0000-4000-8000-000000000001', groupId: '00000000-0000-4000-8000-000000000002', ...o,
});

describe('segment flags: compressed inside the encryption (tape format 3)', () => {
  it('round trips encrypted and compressed; byte 11 holds both bits', () => {
    const b = encodeSegmentHeader(header());
    expect(b[11]).toBe(0x03);
    expect(decodeSegmentHeader(b, 's')).toMatchObject({ encrypted: true, compressed: true });
    expect(encodeSegmentHeader(header({ encrypted: false, compressed: false }))[11]).toBe(0);
  });

  it('refuses a compressed payload outside encryption, and unknown flags', () => {
    expect(() => decodeSegmentHeader(encodeSegmentHeader(header({ encrypted: false })), 's')).toThrow(/compressed payload outside encryption/);
    const b = encodeSegmentHeader(header());
    b[11] = 0x07;
    // The header's CRC is mended so that the flag check itself is what refuses it.
    b.writeUInt32LE(crc32(b.subarray(0, 92)), 92);
    expect(() => decodeSegmentHeader(b, 's')).toThrow(/unknown segment flags 0x7/);
  });

  it('a compressed payload is decompressed; one declaring more than the format allows, or garbage, is damage', () => {
    const c = new FrameCompressor(1);
    const records = Buffer.alloc(100_000, 5);
    expect(recordsPayload(Buffer.from(c.compress(records)), header(), 's').equals(records)).toBe(true);
    expect(recordsPayload(records, header({ compressed: false }), 's')).toBe(records);
    const bomb = Buffer.from(c.compress(Buffer.alloc(MAX_SEGMENT_PAYLOAD + 1)));
    expect(bomb.length).toBeLessThan(64 * 1024);
    expect(() => recordsPayload(bomb, header(), 's')).toThrow(expect.objectContaining({ code: 'TAPE_DAMAGED' }));
    expect(() => recordsPayload(Buffer.from('not a zstd frame'), header(), 's')).toThrow(expect.objectContaining({ code: 'TAPE_DAMAGED' }));
  });
});

describe('a segment read at its catalogued place (expectSegment)', () => {
  const want = { firstSeq: 1n, lastSeq: 1n, count: 1, groupId: '00000000-0000-4000-8000-000000000002', mediaSetId: '00000000-0000-4000-8000-000000000001' };

  it('takes the segment the catalogue names; refuses another range, group or media set, and an encrypted one in a tape catalogued as plaintext', () => {
    const encrypted = encodeSegmentHeader(header());
    expect(expectSegment(encrypted, { ...want, plaintext: false }, 's').encrypted).toBe(true);
    expect(expectSegment(encodeSegmentHeader(header({ encrypted: false, compressed: false })), { ...want, plaintext: true }, 's').encrypted).toBe(false);
    const refused = (h: Buffer, w: Parameters<typeof expectSegment>[1]): unknown => {
      try {
        expectSegment(h, w, 'tape 1 segment 0');
      } catch (e) {
        return e;
      }
      return undefined;
    };
    expect(refused(encrypted, { ...want, plaintext: true })).toMatchObject({ code: 'TAPE_DAMAGED', message: 'tape 1 segment 0: an encrypted segment in a tape catalogued as plaintext', hint: expect.stringMatching(/catalog --rebuild/) });
    for (const other of [{ lastSeq: 2n }, { count: 2 }, { groupId: want.mediaSetId }, { mediaSetId: want.groupId }]) {
      expect(refused(encrypted, { ...want, plaintext: false, ...other })).toMatchObject({ code: 'TAPE_DAMAGED', message: 'tape 1 segment 0: the segment differs from the catalogue' });
    }
  });
});
