import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { TapeSource } from '../tape/tape-source.js';
import { TAPE_NAME, isTapeNamed } from '../tape/tape-name.js';
import { BufferLender } from '../core/buffer-lender.js';
import { JshipError } from '../core/errors.js';
import { DirectBody } from './direct-get.js';
import { isPreconditionFailed, s3Error, store, type S3Settings, type Store } from './s3-store.js';
import { asPrefix, parseS3Url, s3UrlOf } from './s3-url.js';

const RESUMES = 5;
/** Large reads go as ranges of this size, several at once (a single HTTP stream does not fill the link). */
const WINDOW = 8 * 1024 * 1024;
const AHEAD = 3;
/** Range buffers kept for reuse at most (those in flight, those the reader holds). */
const SPARES = 8;

/**
 * A tape object read as a stream: ranges of 8 MiB fetched three at a time
 * and handed on in order. A range whose transfer breaks resumes from the
 * byte it reached (up to 5 times, with backoff), so one dropped connection
 * does not fail an import.
 */
export class S3Source implements TapeSource {
  readonly where: string;
  readonly remote = true;

  /**
   * The object's ETag, learnt with its size: every read asks for that object (If-Match). An object
   * replaced while an import read it in ranges gave the import bytes of two objects, one after the other.
   */
  #etag: string | undefined;
  #size: number | undefined;
  /** Full-size range buffers, handed back by the reader (giveBack) and used again for later ranges. */
  readonly #buffers = new BufferLender(SPARES * WINDOW);

  constructor(private readonly st: Store, readonly bucket: string, readonly key: string, listed?: { size: number; etag: string | undefined }) {
    this.where = s3UrlOf(bucket, key);
    if (listed?.etag) {
      this.#size = listed.size;
      this.#etag = listed.etag;
    }
  }

  async size(): Promise<number> {
    if (this.#size === undefined || this.#etag === undefined) {
      try {
        const h = await this.st.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key }));
        this.#size = h.ContentLength ?? 0;
        this.#etag = h.ETag;
      } catch (e) {
        throw s3Error(e, 'reading a tape', this.bucket, this.key);
      }
    }
    return this.#size;
  }

  /**
   * Takes back a chunk `chunks()` yielded, once the reader holds nothing of
   * it (no view into it either): its memory is used again for a later range.
   * A download otherwise allocated a fresh 8 MiB buffer per range, and
   * touching fresh memory is what costs on a VM that hands freed memory back
   * to its host (docs/BENCHMARKS.md, session 18).
   */
  giveBack(chunk: Buffer): void {
    this.#buffers.giveBack(chunk);
  }

  async *chunks(start = 0, end?: number): AsyncIterable<Buffer> {
    const size = await this.size();
    const last = end ?? size - 1;
    const ahead: Array<Promise<Buffer>> = [];
    let next = start;
    const launch = (): void => {
      const a = next;
      const b = Math.min(last, a + WINDOW - 1);
      next = b + 1;
      const p = this.#fetch(a, b);
      p.catch(() => undefined); // awaited in order below; a consumer that stops early leaves it unread
      ahead.push(p);
    };
    while (ahead.length < AHEAD && next <= last) launch();
    for (let p = ahead.shift(); p; p = ahead.shift()) {
      const buf = await p;
      if (next <= last) launch();
      yield buf;
    }
  }

  /**
   * Bytes a..b (inclusive) in one buffer, as one GetObject, resumed where
   * it broke. The socket writes the body straight into the buffer
   * (DirectBody); a body read otherwise is copied in as it arrives (pieces
   * kept until the range was whole outlived V8's young collections).
   * A store that sends more or fewer bytes than asked for (one that ignores
   * Range and sends the whole object) is refused, and none of its bytes
   * handed on: read on, they would have been taken for the tape's.
   */
  async #fetch(a: number, b: number): Promise<Buffer> {
    const buf = b - a + 1 === WINDOW ? this.#buffers.lend(WINDOW) : Buffer.allocUnsafeSlow(b - a + 1);
    let pos = a;
    for (let attempt = 0; ; attempt++) {
      let body: Readable;
      try {
        const r = await this.st.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key, Range: `bytes=${pos}-${b}`, ...(this.#etag ? { IfMatch: this.#etag } : {}) }));
        body = r.Body as Readable;
      } catch (e) {
        if (isPreconditionFailed(e)) {
          throw new JshipError('S3_MISMATCH', `${this.where} was replaced while it was read (at byte ${pos}; it had ETag ${this.#etag})`, {
            hint: 'another process wrote the object meanwhile: find out which, then import it again',
          });
        }
        throw s3Error(e, 'reading a tape', this.bucket, this.key);
      }
      let broke: unknown;
      let tooLong = false;
      try {
        if (body instanceof DirectBody) {
          if (body.length > b + 1 - pos) tooLong = true;
          else pos += await body.readInto(buf.subarray(pos - a));
        } else {
          for await (const c of body) {
            const piece = c as Buffer;
            if (pos + piece.length > b + 1) {
              tooLong = true;
              break;
            }
            pos += piece.copy(buf, pos - a);
          }
        }
      } catch (e) {
        broke = e;
        // What DirectBody wrote before the break is in buf; resume after it.
        if (body instanceof DirectBody) pos += body.delivered;
      }
      body.destroy();
      // The body ended (or was cut off above): it must have held exactly the bytes asked for.
      if (broke === undefined) {
        if (!tooLong && pos === b + 1) return buf;
        throw new JshipError('S3_ERROR', `${this.where}: asked for bytes ${a}-${b}, the store sent ${tooLong ? `more than ${b - a + 1}` : pos - a} bytes`, {
          hint: 'the store does not honour ranged reads (Range) as S3 does; copy the object to a disk and import the file',
        });
      }
      if (attempt >= RESUMES) throw s3Error(broke, `reading a tape (at byte ${pos}, after ${RESUMES} resumed reads)`, this.bucket, this.key);
      await sleep(200 * 2 ** attempt);
    }
  }
}

/** A tape object (`s3://BUCKET/KEY.tar.zst`), or every tape object under a prefix, in name order. */
export async function s3Sources(url: string, settings: S3Settings = {}): Promise<S3Source[]> {
  const { bucket, key } = parseS3Url(url);
  const st = await store(settings);
  if (key.endsWith('.tar.zst')) {
    const one = new S3Source(st, bucket, key);
    await one.size();
    return [one];
  }
  const prefix = asPrefix(key);
  const out: S3Source[] = [];
  let token: string | undefined;
  try {
    do {
      const r = await st.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, Delimiter: '/', ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of r.Contents ?? []) {
        const name = (o.Key ?? '').slice(prefix.length);
        if (TAPE_NAME.test(name)) out.push(new S3Source(st, bucket, o.Key as string, { size: o.Size ?? 0, etag: o.ETag }));
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  } catch (e) {
    throw s3Error(e, 'listing tapes', bucket, prefix);
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * The tape objects of these serials under the prefix (expire --vault): with
 * `confirm`, deleted. Returns the URLs of those present.
 */
export async function expireTapeObjects(url: string, tapes: Array<{ serial: number; epoch: number }>, confirm: boolean, settings: S3Settings = {}): Promise<string[]> {
  const { bucket, key } = parseS3Url(url);
  const prefix = asPrefix(key);
  const st = await store(settings);
  const gone: string[] = [];
  for (const src of await s3Sources(url, settings)) {
    const k = src.key;
    // Each epoch numbers its chain from 1: tape 3 of epoch 2 is not tape 3 of epoch 1.
    const name = k.slice(prefix.length);
    if (!tapes.some((t) => isTapeNamed(name, t))) continue;
    gone.push(s3UrlOf(bucket, k));
    if (!confirm) continue;
    try {
      await st.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: k }));
    } catch (e) {
      throw s3Error(e, 'deleting an expired tape', bucket, k);
    }
  }
  return gone;
}
