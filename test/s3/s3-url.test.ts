import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { asPrefix, expectedEtag, parseS3Url } from '../../src/s3/s3-url.js';
import { TAPE_NAME as TAPE_OBJECT } from '../../src/tape/tape-name.js';

const md5 = (s: string): Buffer => createHash('md5').update(s).digest();

describe('s3:// URLs and object names (pure)', () => {
  it('parses bucket and key; refuses what a store would refuse, as a usage error', () => {
    expect(parseS3Url('s3://vault')).toEqual({ bucket: 'vault', key: '' });
    expect(parseS3Url('s3://vault/')).toEqual({ bucket: 'vault', key: '' });
    expect(parseS3Url('s3://my.vault-01/prod/db/jship-000001.tar.zst')).toEqual({ bucket: 'my.vault-01', key: 'prod/db/jship-000001.tar.zst' });
    for (const bad of ['vault/x', 's3://', 's3://a', 's3://-bad/x', 's3://has space/x', 's3://vault/a//b', `s3://vault/${'k'.repeat(1025)}`, 's3://vault/a\nb']) {
      expect(() => parseS3Url(bad), bad).toThrow(expect.objectContaining({ code: 'S3_BAD_URL', isUsage: true }));
    }
  });

  it('prefixes end with a slash; tape objects are named and recognised by serial', () => {
    expect(asPrefix('')).toBe('');
    expect(asPrefix('prod')).toBe('prod/');
    expect(asPrefix('prod/')).toBe('prod/');
    expect(TAPE_OBJECT.test('jship-000007.tar.zst')).toBe(true);
    expect(TAPE_OBJECT.test('jship-000007-0000000000000001-0000000000000009.tar.zst')).toBe(true);
    expect(TAPE_OBJECT.test('.jship-000007.partial')).toBe(false);
    expect(TAPE_OBJECT.test('notes.txt')).toBe(false);
  });

  it('expected ETags: MD5 of the body for one PUT; MD5 of the part MD5s, a dash and the count for multipart', () => {
    expect(expectedEtag([md5('hello')], false)).toBe('5d41402abc4b2a76b9719d911017c592');
    const parts = [md5('a'), md5('b')];
    expect(expectedEtag(parts, true)).toBe(`${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-2`);
    expect(expectedEtag([md5('a')], true)).toMatch(/-1$/);
  });
});
