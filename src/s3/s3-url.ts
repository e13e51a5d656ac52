import { createHash } from 'node:crypto';
import { JshipError } from '../core/errors.js';

/** `s3://BUCKET/KEY_OR_PREFIX`: where tapes go in object storage. */
export interface S3Url {
  bucket: string;
  /** The rest after the bucket, without a leading slash ('' for the whole bucket). */
  key: string;
}

export function isS3Url(s: string): boolean {
  return s.startsWith('s3://');
}

/** Bucket names as S3 and its compatible stores allow them (3-63 of a-z 0-9 . -; _ and capitals for old buckets). */
const BUCKET = /^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$/;

export function parseS3Url(s: string): S3Url {
  if (!isS3Url(s)) throw new JshipError('S3_BAD_URL', `${s} is not an s3:// URL`, { hint: 'write s3://BUCKET/PREFIX' });
  const rest = s.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (!BUCKET.test(bucket)) {
    throw new JshipError('S3_BAD_URL', `${s}: "${bucket}" is not a valid bucket name`, { hint: 'bucket names are 3 to 63 letters, digits, dots and hyphens: s3://BUCKET/PREFIX' });
  }
  if (key.includes('//') || Buffer.byteLength(key) > 1024 || /[\u0000-\u001f]/.test(key)) {
    throw new JshipError('S3_BAD_URL', `${s}: the key "${key}" is not usable`, { hint: 'use a key of at most 1024 bytes, without control characters or empty path parts' });
  }
  return { bucket, key };
}

/** A key prefix under which tapes are named: '' or ending with '/'. */
export function asPrefix(key: string): string {
  return key === '' || key.endsWith('/') ? key : `${key}/`;
}

export function s3UrlOf(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/**
 * The ETag S3 gives an object: the MD5 of the body for a single PUT; for a
 * multipart upload, the MD5 of the parts' MD5s, a dash and the part count.
 */
export function expectedEtag(partMd5s: readonly Buffer[], multipart: boolean): string {
  if (!multipart) return (partMd5s[0] ?? createHash('md5').digest()).toString('hex');
  const h = createHash('md5');
  for (const m of partMd5s) h.update(m);
  return `${h.digest('hex')}-${partMd5s.length}`;
}
