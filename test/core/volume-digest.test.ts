import { describe, expect, it } from 'vitest';
import { ChunkTable, DIGEST_ALGORITHM, checkPointDigest, digestVolume, groupRoot, leafHasher } from '../../src/core/volume-digest.js';

describe('point digests (pure)', () => {
  it('golden roots: a volume of 1536 bytes in 1024-byte chunks (the last one short), and the group over it', async () => {
    const hash = await leafHasher();
    const bytes = Buffer.from(Array.from({ length: 1536 }, (_, i) => i & 0xff));
    const v = await digestVolume('db', 1536, 1024, hash, async (o, l) => bytes.subarray(o, o + l));
    expect(v).toEqual({ name: 'db', size: 1536, root: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // Leaves: XXH64 (seed 0) of bytes 0..1023 and 1024..1535, 8 bytes LE each, then SHA-256.
    expect(hash(bytes.subarray(0, 1024))).toBe(hash(Buffer.from(bytes.subarray(0, 1024))));
    expect(v.root).toMatchInlineSnapshot(`"f0a8610c84916985d68e5a576f61b2a2831f55a70d251eeb00624a791e406345"`);
    expect(groupRoot([v, { name: 'log', size: 0, root: v.root }])).toMatchInlineSnapshot(`"133b5bdca6ef3742dea8ab8d480d30a415e43f99f94954705719c544ac7d75dc"`);
    // Any byte changes the root.
    const other = Buffer.from(bytes);
    other[1500] = (other[1500] as number) ^ 1;
    expect((await digestVolume('db', 1536, 1024, hash, async (o, l) => other.subarray(o, o + l))).root).not.toBe(v.root);
  });

  it('a chunk table: writes mark the chunks they touch; takeDirty gives them as runs and clears them', () => {
    const t = new ChunkTable(10 * 1024, 1024);
    expect(t.takeDirty()).toEqual([[0, 10]]); // new: every chunk is unknown
    t.markDirty(1000, 100); // chunks 0 and 1
    t.markDirty(5 * 1024, 1); // chunk 5
    t.markDirty(9 * 1024 + 100, 5000); // past the end: chunk 9 only
    t.markDirty(0, 0);
    expect(t.takeDirty()).toEqual([[0, 2], [5, 1], [9, 1]]);
    expect(t.takeDirty()).toEqual([]);
    expect(t.range(9)).toEqual([9 * 1024, 1024]);
  });

  it('a digest read from a tape is checked: algorithm, fields, bounds, and that its root is its volumes\' root', () => {
    const vols = [{ name: 'a', size: 4096, root: 'a'.repeat(64) }];
    const good = { algorithm: DIGEST_ALGORITHM, seq: '42', kind: 'restore-point', name: 'm1', chunkSize: 1024, volumes: vols, root: groupRoot(vols) };
    expect(checkPointDigest(good, 't')).toEqual(good);
    for (const [why, bad] of [
      ['algorithm', { ...good, algorithm: 'md5' }],
      ['seq', { ...good, seq: 42 }],
      ['kind', { ...good, kind: 'scan' }],
      ['chunkSize', { ...good, chunkSize: 100 }],
      ['volumes', { ...good, volumes: [] }],
      ['a volume', { ...good, volumes: [{ name: 'a', size: -1, root: 'a'.repeat(64) }] }],
      ['root', { ...good, root: 'b'.repeat(64) }],
      ['not an object', null],
    ] as const) {
      expect(() => checkPointDigest(bad, 't'), why).toThrow(/point digest/);
    }
  });
});
