import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { JshipError } from '../core/errors.js';
import { isPreconditionFailed, s3Error, type Store } from './s3-store.js';
import { s3UrlOf } from './s3-url.js';

/**
 * The object that says which group's tapes a prefix holds (docs/FORMAT.md
 * "Prefix claim"). Tape names do not say which group wrote them, so two
 * groups exporting to one prefix took the same keys: the second's first
 * upload aborted the first's unfinished one as an orphan, and on a store
 * that ignores If-None-Match on CompleteMultipartUpload (radosgw 16.2) the
 * second's tape replaced the first's after the first had counted it and
 * purged its journal. The first export to a prefix claims it, with a PUT
 * made only where no object is; an export of another group is refused
 * before it uploads, aborts or purges anything.
 */
export const PREFIX_CLAIM = '.jship-group';

export interface PrefixClaim {
  format: 'jship-prefix-claim';
  version: 1;
  groupId: string;
  claimedAt: string;
}

export function encodePrefixClaim(groupId: string, now: Date): Buffer {
  const claim: PrefixClaim = { format: 'jship-prefix-claim', version: 1, groupId, claimedAt: now.toISOString() };
  return Buffer.from(`${JSON.stringify(claim)}\n`, 'utf8');
}

/** The group a claim names; `where` is for messages. */
export function decodePrefixClaim(bytes: Uint8Array, where: string): string {
  let c: Partial<PrefixClaim> | undefined;
  try {
    c = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<PrefixClaim>;
  } catch {
    c = undefined;
  }
  if (!c || typeof c !== 'object' || c.format !== 'jship-prefix-claim' || c.version !== 1 || typeof c.groupId !== 'string' || !/^[0-9a-f-]{36}$/.test(c.groupId)) {
    throw new JshipError('TAPE_EXISTS', `${where} is not a jship prefix claim`, {
      hint: 'jship keeps a claim of that name in every prefix it exports to: export to another prefix, or find out what wrote that object',
    });
  }
  return c.groupId;
}

/** Claims the prefix for `groupId`, or finds it claimed by that group already; another group's claim is refused. */
export async function claimPrefix(st: Store, bucket: string, prefix: string, groupId: string, now: () => Date = () => new Date()): Promise<void> {
  const key = `${prefix}${PREFIX_CLAIM}`;
  const url = s3UrlOf(bucket, key);
  // Twice at most: a claim made by another export between our read and our PUT is read on the second look.
  for (let look = 0; look < 2; look++) {
    const held = await readClaim(st, bucket, key, url);
    if (held === groupId) return;
    if (held !== undefined) {
      throw new JshipError('TAPE_EXISTS', `${s3UrlOf(bucket, prefix)} holds the tapes of group ${held} (${url}); this is group ${groupId}`, {
        hint: 'give each group a prefix of its own (tape names do not say which group wrote them); nothing was uploaded, counted or purged',
      });
    }
    try {
      await st.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: encodePrefixClaim(groupId, now()), ContentType: 'application/json', IfNoneMatch: '*' }));
      return;
    } catch (e) {
      if (!isPreconditionFailed(e)) throw s3Error(e, 'claiming the prefix for this group', bucket, key);
    }
  }
  throw new JshipError('TAPE_EXISTS', `${url}: the prefix's claim keeps changing`, { hint: 'another export is claiming this prefix: give each group a prefix of its own' });
}

async function readClaim(st: Store, bucket: string, key: string, url: string): Promise<string | undefined> {
  let bytes: Uint8Array;
  try {
    const r = await st.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-4095' }));
    bytes = await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
  } catch (e) {
    const err = s3Error(e, 'reading the prefix\'s claim', bucket, key);
    if (err.code === 'S3_NOT_FOUND') return undefined;
    throw err;
  }
  return decodePrefixClaim(bytes, url);
}
