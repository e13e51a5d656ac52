import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Sources } from '../../src/s3/s3-source.js';
import { MiB } from '../helpers.js';

/**
 * An HTTP endpoint that answers every GetObject with the whole object and
 * status 200, whatever Range asked for (as some stores that call
 * themselves S3-compatible do); HeadObject as S3 does. With `short`, it
 * answers a range with its first half only (206, a Content-Length to match).
 */
describe('S3 tape reads against a store that ignores Range', () => {
  const object = randomBytes(9 * MiB); // more than one 8 MiB range
  let server: Server;
  let endpoint: string;
  let short = false;
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      res.setHeader('ETag', '"0123456789abcdef0123456789abcdef"');
      res.setHeader('Content-Type', 'application/zstd');
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (short && range && req.method !== 'HEAD') {
        const from = Number(range[1]);
        const half = object.subarray(from, from + Math.floor((Number(range[2]) - from + 1) / 2));
        res.writeHead(206, { 'Content-Length': String(half.length), 'Content-Range': `bytes ${from}-${from + half.length - 1}/${object.length}` });
        res.end(half);
        return;
      }
      res.setHeader('Content-Length', String(object.length));
      res.end(req.method === 'HEAD' ? undefined : object);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('refuses an answer to a range that holds more bytes than asked for, naming the range (it was read as the tape\'s bytes)', async () => {
    const [src] = await s3Sources('s3://vault/t/jship-000001-0000000000000001.tar.zst', { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
    expect(await src!.size()).toBe(object.length);
    let read = 0;
    await expect((async () => {
      for await (const c of src!.chunks()) read += c.length;
    })()).rejects.toMatchObject({ code: 'S3_ERROR', message: expect.stringContaining(`asked for bytes 0-${8 * MiB - 1}, the store sent more than ${8 * MiB} bytes`) });
    expect(read).toBe(0);
    // A short range (a trailer, a segment) the same: it was the object's first bytes, taken for bytes 100-199.
    const part: Buffer[] = [];
    await expect((async () => {
      for await (const c of src!.chunks(100, 199)) part.push(c);
    })()).rejects.toMatchObject({ code: 'S3_ERROR', message: expect.stringContaining('asked for bytes 100-199, the store sent more than 100 bytes') });
    expect(part).toEqual([]);
  });

  it('refuses an answer to a range that ends short (it was taken as the whole range)', async () => {
    short = true;
    try {
      const [src] = await s3Sources('s3://vault/t/jship-000001-0000000000000001.tar.zst', { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
      const part: Buffer[] = [];
      await expect((async () => {
        for await (const c of src!.chunks(100, 199)) part.push(c);
      })()).rejects.toMatchObject({ code: 'S3_ERROR', message: expect.stringContaining('asked for bytes 100-199, the store sent 50 bytes') });
      // Nothing of it is handed on: a range is whole before it is (until session 17 its first 50 bytes were).
      expect(part).toEqual([]);
    } finally {
      short = false;
    }
  });
});

/** A store that honours Range as S3 does: the chunks of a read use the buffers handed back (giveBack) again. */
describe('S3 tape reads give their range buffers out again', () => {
  const object = randomBytes(8 * MiB * 7 + 4321);
  let server: Server;
  let endpoint: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      res.setHeader('ETag', '"0123456789abcdef0123456789abcdef"');
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (req.method === 'HEAD' || !range) {
        res.setHeader('Content-Length', String(object.length));
        res.end(req.method === 'HEAD' ? undefined : object);
        return;
      }
      const from = Number(range[1]);
      const to = Math.min(Number(range[2]), object.length - 1);
      res.writeHead(206, { 'Content-Length': String(to - from + 1), 'Content-Range': `bytes ${from}-${to}/${object.length}` });
      res.end(object.subarray(from, to + 1));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));

  it('reads into a buffer handed back, never into one still held or one it did not give out', async () => {
    const [src] = await s3Sources('s3://vault/t/jship-000001-0000000000000001.tar.zst', { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
    const seen: Buffer[] = [];
    const copy: Buffer[] = [];
    const held = Buffer.alloc(8 * MiB);
    src!.giveBack!(held); // not one of its own: ignored
    for await (const c of src!.chunks()) {
      expect(c === held).toBe(false);
      copy.push(Buffer.from(c));
      seen.push(c);
      // The first chunk is kept (never handed back); the others are handed back once copied.
      if (seen.length > 1) src!.giveBack!(c);
    }
    expect(Buffer.concat(copy).equals(object)).toBe(true);
    // Three ranges are asked for ahead, each as the reader takes the one before: the sixth range is read into
    // the second one's buffer (handed back before the third was taken), the seventh into the third's; the last,
    // shorter, into one of its own.
    expect(seen.map((b) => seen.indexOf(b))).toEqual([0, 1, 2, 3, 4, 1, 2, 7]);
  });
});
