import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand,
  ListMultipartUploadsCommand, PutObjectCommand, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { JshipError } from '../core/errors.js';
import type { TapeDestination, TapeOutput } from '../tape/destination.js';
import { isPreconditionFailed, s3Error, store, type S3Settings, type Store } from './s3-store.js';
import { asPrefix, expectedEtag, parseS3Url, s3UrlOf } from './s3-url.js';
import { nameGeneration, serialPrefix, tapeFileName } from '../tape/tape-name.js';
import { claimPrefix } from './prefix-claim.js';

/** Parts uploading at once: with 8 MiB parts, at most 32 MiB of a tape is in memory. */
const PARTS_IN_FLIGHT = 3;
/** After this many parts the part size doubles, so a tape of any size stays under S3's 10,000 parts. */
const PARTS_PER_STEP = 1000;

/**
 * Tapes as objects under an s3:// prefix, named `jship-SERIAL-FIRSTSEQ.tar.zst`
 * (they sort like tape files). Each is uploaded while it is written, in
 * parts with Content-MD5 (the store checks every part), and becomes visible
 * only when complete; its size and ETag are then confirmed with HeadObject
 * before the export counts it (and so before anything is purged).
 */
export class S3Destination implements TapeDestination {
  readonly where: string;
  readonly durable = true;
  readonly splittable = true;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #settings: S3Settings;
  /** The group this prefix was found claimed for (once per export). */
  #claimedFor: string | undefined;

  constructor(url: string, settings: S3Settings = {}) {
    const { bucket, key } = parseS3Url(url);
    this.#bucket = bucket;
    this.#prefix = asPrefix(key);
    this.#settings = settings;
    this.where = s3UrlOf(bucket, this.#prefix);
  }

  async open(serial: number, firstSeq: bigint, generation = 1, groupId?: string): Promise<TapeOutput> {
    const st = await store(this.#settings);
    // The prefix is one group's (prefix-claim.ts): another group's export stops here, before it aborts another's upload as an orphan.
    if (groupId !== undefined && this.#claimedFor !== groupId) {
      await claimPrefix(st, this.#bucket, this.#prefix, groupId);
      this.#claimedFor = groupId;
    }
    // The last sequence number is not known yet: the key carries the serial and the first one (DESIGN "Names").
    const key = this.#prefix + tapeFileName(serial, firstSeq, null, generation);
    // Uploads of this serial of this epoch left by an export that was killed (its retry may start at another sequence number);
    // not those of another epoch's chain (an old primary exporting its own serial, a split brain's other side).
    return S3Upload.start(st, this.#bucket, key, { prefix: `${this.#prefix}${serialPrefix(serial)}`, generation });
  }
}

class S3Upload implements TapeOutput {
  readonly #st: Store;
  readonly #bucket: string;
  readonly #key: string;
  /** Set when the key already holds an object: nothing is uploaded, the bytes are compared at commit. */
  readonly #existing: { size: number; etag: string } | undefined;
  #uploadId: string | undefined;
  /** The part being filled: bytes written and not yet sent (copied in: a chunk's memory is the writer's again once its write returns). */
  #part: Buffer | undefined;
  #fill = 0;
  /**
   * Memory of parts whose upload succeeded, filled again by the next parts: a fresh 8 MiB per part
   * lay uncollected until V8's next full collection (about 30 MiB of peak memory).
   */
  readonly #spare: Buffer[] = [];
  #bytes = 0;
  readonly #md5s: Buffer[] = [];
  readonly #etags: string[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  #failed: unknown;

  private constructor(st: Store, bucket: string, key: string, existing: { size: number; etag: string } | undefined) {
    this.#st = st;
    this.#bucket = bucket;
    this.#key = key;
    this.#existing = existing;
  }

  static async start(st: Store, bucket: string, key: string, orphans: { prefix: string; generation: number }): Promise<S3Upload> {
    let existing: { size: number; etag: string } | undefined;
    try {
      const h = await st.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      existing = { size: h.ContentLength ?? 0, etag: unquote(h.ETag) };
    } catch (e) {
      const err = s3Error(e, 'checking the tape key', bucket, key);
      if (err.code !== 'S3_NOT_FOUND') throw err;
    }
    // Unfinished uploads of this tape left by an export that was killed: abort them, so no orphan parts stay billed.
    if (!existing) await abortOrphans(st, bucket, orphans.prefix, orphans.generation);
    return new S3Upload(st, bucket, key, existing);
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.#failed) throw this.#failed;
    this.#bytes += chunk.length;
    for (let off = 0; off < chunk.length;) {
      const size = this.#partSize();
      this.#part ??= this.#spareOf(size) ?? Buffer.allocUnsafeSlow(size);
      const n = chunk.copy(this.#part, this.#fill, off, off + size - this.#fill);
      this.#fill += n;
      off += n;
      if (this.#fill === size) await this.#sendPart(this.#takePart());
    }
  }

  /** The part filled so far, which is sent (or kept for a single PUT) as it is. */
  #takePart(): Buffer {
    const part = this.#part?.subarray(0, this.#fill) ?? Buffer.alloc(0);
    this.#part = undefined;
    this.#fill = 0;
    return part;
  }

  async commit(_name: string, beforeRename?: (finalPath: string) => Promise<void>): Promise<string> {
    const url = s3UrlOf(this.#bucket, this.#key);
    const last = this.#takePart();
    const single = this.#md5s.length === 0 && this.#uploadId === undefined;
    if (single) {
      this.#md5s.push(md5(last));
    } else if (last.length > 0 || this.#md5s.length === 0) {
      await this.#sendPart(last);
    }
    await this.#drain();
    const etag = expectedEtag(this.#md5s, !single);
    if (this.#existing) {
      if (this.#existing.size === this.#bytes && this.#existing.etag === etag) return url;
      throw new JshipError('TAPE_EXISTS', `${url} exists already and holds other bytes`, {
        hint: 'objects are never overwritten: export to another prefix, or find out where that object came from',
      });
    }
    await beforeRename?.(url);
    // Only where no object is yet (If-None-Match: *): another export (another group's, to the same prefix) may have
    // completed this key since the check at start, and would otherwise be replaced after it counted its tape.
    // radosgw 16.2 honours it on PutObject and ignores it on CompleteMultipartUpload; AWS S3 honours both.
    // Refused, the object is still ours when it holds our bytes (a retry of a request whose answer was lost).
    let refused = false;
    try {
      if (single) {
        await this.#st.client.send(new PutObjectCommand({
          Bucket: this.#bucket, Key: this.#key, Body: last, ContentLength: last.length, ContentMD5: (this.#md5s[0] as Buffer).toString('base64'),
          ContentType: 'application/zstd', IfNoneMatch: '*',
        }));
      } else {
        await this.#st.client.send(new CompleteMultipartUploadCommand({
          Bucket: this.#bucket, Key: this.#key, UploadId: this.#uploadId, IfNoneMatch: '*',
          MultipartUpload: { Parts: this.#etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }));
        this.#uploadId = undefined;
      }
    } catch (e) {
      if (isPreconditionFailed(e)) refused = true;
      else throw s3Error(e, 'completing the tape upload', this.#bucket, this.#key);
    }
    // What the store holds is what we sent: size and ETag (the MD5s it checked), read back.
    let head;
    try {
      head = await this.#st.client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: this.#key }));
    } catch (e) {
      throw s3Error(e, 'confirming the uploaded tape', this.#bucket, this.#key);
    }
    if (refused && (head.ContentLength !== this.#bytes || unquote(head.ETag) !== etag)) {
      throw new JshipError('TAPE_EXISTS', `${url} was written by another export while this one uploaded it`, {
        hint: 'give each group a prefix of its own (tape names do not say which group wrote them); this tape was not counted and nothing was purged',
      });
    }
    if (head.ContentLength !== this.#bytes || unquote(head.ETag) !== etag) {
      throw new JshipError('S3_MISMATCH', `${url}: the store holds ${head.ContentLength} bytes with ETag ${unquote(head.ETag)}, but ${this.#bytes} bytes with ETag ${etag} were sent`, {
        hint: 'the tape was not counted and nothing was purged; check the store, then export again',
      });
    }
    return url;
  }

  async abort(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
    if (this.#uploadId === undefined) return;
    const id = this.#uploadId;
    this.#uploadId = undefined;
    // Best effort: a store that is down keeps the upload; the next export of this key aborts it.
    await this.#st.client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: this.#key, UploadId: id })).catch(() => undefined);
  }

  /** A spare part's memory of `size` bytes (spares of a smaller part size are dropped). */
  #spareOf(size: number): Buffer | undefined {
    for (let b = this.#spare.pop(); b; b = this.#spare.pop()) if (b.length === size) return b;
    return undefined;
  }

  /** A whole part's memory, once nothing reads it any more (its upload succeeded, or it was never sent). */
  #giveBack(body: Buffer): void {
    if (body.length === this.#partSize() && this.#spare.length < PARTS_IN_FLIGHT) this.#spare.push(body);
  }

  #partSize(): number {
    return this.#st.partSize * 2 ** Math.floor(this.#md5s.length / PARTS_PER_STEP);
  }

  async #sendPart(body: Buffer): Promise<void> {
    const digest = md5(body);
    const number = this.#md5s.length + 1;
    this.#md5s.push(digest);
    if (this.#existing) {
      this.#giveBack(body);
      return;
    }
    if (this.#uploadId === undefined) {
      try {
        const r = await this.#st.client.send(new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: this.#key, ContentType: 'application/zstd' }));
        this.#uploadId = r.UploadId;
      } catch (e) {
        throw s3Error(e, 'starting the tape upload', this.#bucket, this.#key);
      }
    }
    while (this.#inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(this.#inFlight);
    if (this.#failed) throw this.#failed;
    const p = this.#st.client.send(new UploadPartCommand({
      Bucket: this.#bucket, Key: this.#key, UploadId: this.#uploadId, PartNumber: number,
      Body: body, ContentLength: body.length, ContentMD5: digest.toString('base64'),
    })).then((r) => {
      this.#etags[number - 1] = unquote(r.ETag);
      // Only after success: a failed request's socket may still be sending it (the upload fails either way).
      this.#giveBack(body);
    }, (e: unknown) => {
      this.#failed ??= s3Error(e, `uploading part ${number} of the tape`, this.#bucket, this.#key);
    }).finally(() => this.#inFlight.delete(p));
    this.#inFlight.add(p);
  }

  async #drain(): Promise<void> {
    await Promise.all([...this.#inFlight]);
    if (this.#failed) throw this.#failed;
  }
}

async function abortOrphans(st: Store, bucket: string, prefix: string, generation: number): Promise<void> {
  try {
    const r = await st.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
    for (const u of r.Uploads ?? []) {
      if (u.Key?.startsWith(prefix) && nameGeneration(u.Key) === generation && u.UploadId) await st.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
    }
  } catch (e) {
    throw s3Error(e, 'looking for unfinished uploads of the tape', bucket, prefix);
  }
}

function md5(b: Buffer): Buffer {
  return createHash('md5').update(b).digest();
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}
