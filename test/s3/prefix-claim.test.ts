import { describe, expect, it } from 'vitest';
import { decodePrefixClaim, encodePrefixClaim } from '../../src/s3/prefix-claim.js';

describe('prefix claim codec', () => {
  const group = '0a1b2c3d-0000-4000-8000-000000000001';

  it('is one line of JSON, byte for byte, and reads back its group', () => {
    const bytes = encodePrefixClaim(group, new Date(Date.UTC(2026, 11, 6, 5, 40)));
    expect(bytes.toString('utf8')).toBe(`{"format":"jship-prefix-claim","version":1,"groupId":"${group}","claimedAt":"2026-12-06T05:40:00.000Z"}\n`);
    expect(decodePrefixClaim(bytes, 's3://b/p/.jship-group')).toBe(group);
  });

  it('refuses anything else, naming the object', () => {
    const bad = [
      '', 'not json', '[]', 'null',
      JSON.stringify({ format: 'jship-prefix-claim', version: 2, groupId: group }),
      JSON.stringify({ format: 'other', version: 1, groupId: group }),
      JSON.stringify({ format: 'jship-prefix-claim', version: 1, groupId: 'not-a-group' }),
      JSON.stringify({ format: 'jship-prefix-claim', version: 1 }),
    ];
    for (const b of bad) {
      expect(() => decodePrefixClaim(Buffer.from(b), 's3://b/p/.jship-group'), b).toThrow(expect.objectContaining({ code: 'TAPE_EXISTS', message: expect.stringContaining('s3://b/p/.jship-group') }));
    }
  });
});
