import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SUPERBLOCK_BYTES, decodeSuperblock, encodeSuperblock, type Superblock } from '../../src/core/superblock.js';

const golden = readFileSync(new URL('../fixtures/superblock/sb.bin', import.meta.url));
const sb: Superblock = {
  flags: 1, groupId: '9d707fe4-64c8-4f79-a875-5b0b7a0739bd', generation: 7n, journalSize: 2097152, metaOffset: 8192, metaSlots: 960,
  dataOffset: 69632, dataSize: 2027520, outSeq: 51n, outDataPos: 204800n, headSeq: 104n, headDataPos: 409836n, appliedSeq: 103n,
  lastTimestamp: 1795598559629117433n,
};

describe('superblock codec', () => {
  it('encodes to the golden bytes and decodes them back', () => {
    expect(encodeSuperblock(sb).subarray(0, SUPERBLOCK_BYTES).equals(golden)).toBe(true);
    expect(decodeSuperblock(golden)).toEqual(sb);
  });

  it('refuses every bit flip and every truncation with a named error', () => {
    for (let bit = 0; bit < SUPERBLOCK_BYTES * 8; bit++) {
      const b = Buffer.from(golden);
      b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7));
      expect(() => decodeSuperblock(b), `bit ${bit}`).toThrowError(expect.objectContaining({ code: expect.stringMatching(/^SUPERBLOCK_BAD_(MAGIC|CRC)$/) }));
    }
    for (let n = 0; n < SUPERBLOCK_BYTES; n++) {
      expect(() => decodeSuperblock(golden.subarray(0, n))).toThrowError(expect.objectContaining({ code: 'SUPERBLOCK_TRUNCATED' }));
    }
  });

  it('refuses pointers that contradict each other', () => {
    const cases: Array<Partial<Superblock>> = [
      { headSeq: 50n },
      { outSeq: 0n, headSeq: 0n },
      { headSeq: 51n + 961n },
      { headDataPos: 100n },
      { dataSize: 4_000_000 },
      { metaOffset: 4096 },
    ];
    for (const c of cases) {
      expect(() => decodeSuperblock(encodeSuperblock({ ...sb, ...c })), JSON.stringify(c, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)))
        .toThrowError(expect.objectContaining({ code: 'SUPERBLOCK_BAD_FIELD' }));
    }
  });
});
