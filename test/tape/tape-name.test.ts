import { describe, expect, it } from 'vitest';
import { isTapeNamed, nameGeneration, storedTapeName, tapeFileName, tapeName } from '../../src/tape/tape-name.js';

describe('tape names', () => {
  it('carry the epoch as -eG from generation 2 on, and read it back; epoch 1 names are as before', () => {
    expect(tapeFileName(3, 1001n, 1500n)).toBe('jship-000003-0000000000001001-0000000000001500.tar.zst');
    expect(tapeFileName(1, 1001n, null, 2)).toBe('jship-000001-0000000000001001-e2.tar.zst');
    expect(tapeName(2, null, 77n, 3)).toBe('jship-000002-base-0000000000000077-e3.tar.zst');
    expect(tapeName(2, null, null, 1)).toBe('jship-000002-empty.tar.zst');
    for (const g of [1, 2, 3, 12]) {
      expect(nameGeneration(tapeFileName(5, 9n, 10n, g))).toBe(g);
      expect(nameGeneration(tapeFileName(5, 9n, null, g))).toBe(g);
      expect(nameGeneration(tapeName(5, null, 4n, g))).toBe(g);
    }
    // An S3 key with its prefix, and names that are not a later epoch's.
    expect(nameGeneration('vault/site-a/jship-000001-0000000000000001-e2.tar.zst')).toBe(2);
    expect(nameGeneration('jship-000001-0000000000000001.tar.zst')).toBe(1);
    expect(nameGeneration('jship-000001-e0.tar.zst')).toBe(1);
  });

  it('a name is of one serial of one epoch\'s chain: tape 1 of epoch 2 is not tape 1 of epoch 1 (expire --vault deleted both)', () => {
    expect(isTapeNamed('jship-000007-0000000000000042.tar.zst', { serial: 7, epoch: 1 })).toBe(true);
    expect(isTapeNamed('jship-1234567-0000000000000042.tar.zst', { serial: 1234567, epoch: 1 })).toBe(true);
    expect(isTapeNamed('jship-000001-0000000000001001-e2.tar.zst', { serial: 1, epoch: 1 })).toBe(false);
    expect(isTapeNamed('jship-000001-0000000000001001-e2.tar.zst', { serial: 1, epoch: 2 })).toBe(true);
    expect(isTapeNamed('jship-000001-0000000000000001-0000000000000009.tar.zst', { serial: 1, epoch: 2 })).toBe(false);
    expect(isTapeNamed('jship-000012-base-0000000000000077-e3.tar.zst', { serial: 12, epoch: 3 })).toBe(true);
    expect(isTapeNamed('notes.txt', { serial: 1, epoch: 1 })).toBe(false);
  });

  it('a replica stores link tapes and damaged tapes under names of their own', () => {
    const name = tapeFileName(4, 10n, 20n, 2);
    expect(storedTapeName({ link: false, partial: false, serial: 4, generation: 2, name })).toBe(name);
    expect(storedTapeName({ link: true, partial: false, serial: 4, generation: 2, name })).toBe('jship-link-000004-0000000000000010-0000000000000020-e2.tar.zst');
    expect(storedTapeName({ link: true, partial: true, serial: 4, generation: 1, name })).toBe('jship-link-000004-partial.tar.zst');
    expect(storedTapeName({ link: false, partial: true, serial: 4, generation: 3, name })).toBe('jship-000004-partial-e3.tar.zst');
  });
});
