import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectBody, parseResponseHead } from '../../src/s3/direct-get.js';
import { s3Sources } from '../../src/s3/s3-source.js';
import { store } from '../../src/s3/s3-store.js';
import { MiB } from '../helpers.js';

const head = (s: string): ReturnType<typeof parseResponseHead> => parseResponseHead(Buffer.from(s, 'latin1'));

describe('parseResponseHead', () => {
  it('reads the status, the headers (names in lower case, repeated ones joined) and the length', () => {
    const text = 'HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\nETag: "abc"\r\nX-Amz-Meta-A: 1\r\nx-amz-meta-a: 2\r\n\r\n';
    expect(head(`${text}BODY`)).toEqual({
      status: 206, reason: 'Partial Content', length: 100, size: Buffer.byteLength(text),
      headers: { 'content-length': '100', etag: '"abc"', 'x-amz-meta-a': '1, 2' },
    });
    expect(head('HTTP/1.0 200\r\ncontent-length: 0\r\n\r\n')).toMatchObject({ status: 200, reason: '', length: 0 });
  });

  it('waits for the blank line that ends the head', () => {
    expect(head('HTTP/1.1 206 Partial Content\r\nContent-Length: 1')).toBeUndefined();
    expect(head('')).toBeUndefined();
  });

  it('gives no length to a body framed otherwise: chunked, or until the connection closes', () => {
    expect(head('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n')?.length).toBeUndefined();
    expect(head('HTTP/1.1 200 OK\r\n\r\n')?.length).toBeUndefined();
  });

  it('refuses what is not an HTTP/1.x response head', () => {
    expect(() => head('HTTP/2 200\r\n\r\n')).toThrow(/not an HTTP\/1.x status line/);
    expect(() => head('SSH-2.0-OpenSSH\r\n\r\n')).toThrow(/not an HTTP\/1.x status line/);
    expect(() => head('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n')).toThrow(/not an HTTP header/);
    expect(() => head('HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n')).toThrow(/Content-Length "5, 6" is not one length/);
    expect(() => head('HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n')).toThrow(/not one length/);
    expect(() => head(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70 * 1024)}`)).toThrow(/longer than 65536 bytes/);
  });
});

/**
 * A plain-http endpoint answering GetObject with Range as S3 does, with the
 * misbehaviours a test switches on: the body in small pieces, the
 * connection cut part-way through a range, a chunked body, an error.
 */
describe('ranged GETs read straight into the range buffer', () => {
  const object = randomBytes(20 * MiB + 12345); // three ranges, the last one short
  let server: Server;
  let endpoint: string;
  let mode: 'whole' | 'pieces' | 'cut' | 'chunked' | 'precondition' | 'denied' = 'whole';
  const asked: string[] = [];
  let cuts = 0;
  const settings = (): Parameters<typeof s3Sources>[1] => ({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
  const URL = 's3://vault/t/jship-000001-0000000000000001.tar.zst';

  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    res.setHeader('ETag', '"0123456789abcdef0123456789abcdef"');
    if (req.method === 'HEAD') {
      res.setHeader('Content-Length', String(object.length));
      res.end();
      return;
    }
    // Every GET is signed, and asks for the object it learnt with its size.
    if (!/^AWS4-HMAC-SHA256 Credential=k\//.test(req.headers.authorization ?? '') || req.headers['if-match'] !== '"0123456789abcdef0123456789abcdef"') {
      res.writeHead(400).end();
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!range) {
      res.writeHead(400).end();
      return;
    }
    asked.push(req.headers.range ?? '');
    const from = Number(range[1]);
    const body = object.subarray(from, Number(range[2]) + 1);
    if (mode === 'precondition' || mode === 'denied') {
      const [status, code] = mode === 'precondition' ? [412, 'PreconditionFailed'] : [403, 'AccessDenied'];
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code} by the test</Message></Error>`;
      res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': String(Buffer.byteLength(xml)) }).end(xml);
      return;
    }
    if (mode === 'chunked') {
      res.writeHead(206, { 'Content-Range': `bytes ${from}-${from + body.length - 1}/${object.length}` });
      res.write(body.subarray(0, 1000));
      res.end(body.subarray(1000));
      return;
    }
    res.writeHead(206, { 'Content-Length': String(body.length), 'Content-Range': `bytes ${from}-${from + body.length - 1}/${object.length}` });
    if (mode === 'cut' && cuts < 2 && body.length > MiB) {
      // Part of the range, then the connection drops: the reader resumes from the byte it reached.
      cuts++;
      res.write(body.subarray(0, 3 * MiB + 7), () => setImmediate(() => res.socket?.destroy()));
      return;
    }
    if (mode === 'pieces') {
      // Small writes, each on its own turn: many reads, the head alone in the first.
      res.flushHeaders();
      let at = 0;
      const next = (): void => {
        if (at >= body.length) {
          res.end();
          return;
        }
        const n = Math.min(body.length - at, 1 + ((at * 7919) % 300_000));
        res.write(body.subarray(at, at + n), () => setImmediate(next));
        at += n;
      };
      next();
      return;
    }
    res.end(body);
  };

  beforeAll(async () => {
    server = createServer(answer);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const readAll = async (): Promise<Buffer> => {
    const [src] = await s3Sources(URL, settings());
    const parts: Buffer[] = [];
    for await (const c of src!.chunks()) parts.push(c);
    return Buffer.concat(parts);
  };

  it('hands the SDK a body that the socket writes into the caller\'s buffer, and reads the object byte for byte', async () => {
    mode = 'whole';
    const st = await store(settings());
    const r = await st.client.send(new GetObjectCommand({ Bucket: 'vault', Key: 't/jship-000001-0000000000000001.tar.zst', Range: 'bytes=5-1049156', IfMatch: '"0123456789abcdef0123456789abcdef"' }));
    expect(r.Body).toBeInstanceOf(DirectBody);
    expect(r.ContentLength).toBe(MiB + 576);
    const body = r.Body as unknown as DirectBody;
    const buf = Buffer.alloc(MiB + 576);
    expect(await body.readInto(buf)).toBe(buf.length);
    expect(buf.equals(object.subarray(5, 1049157))).toBe(true);
    expect(await body.readInto(Buffer.alloc(10))).toBe(0);
    expect((await readAll()).equals(object)).toBe(true);
  });

  it('reads a body that arrives in many small pieces, the head alone first', async () => {
    mode = 'pieces';
    expect((await readAll()).equals(object)).toBe(true);
  });

  it('read as a stream (the SDK reads a body so), yields the same bytes', async () => {
    mode = 'pieces';
    const st = await store(settings());
    const r = await st.client.send(new GetObjectCommand({ Bucket: 'vault', Key: 't/jship-000001-0000000000000001.tar.zst', Range: 'bytes=100-2000099', IfMatch: '"0123456789abcdef0123456789abcdef"' }));
    expect(Buffer.from(await r.Body!.transformToByteArray()).equals(object.subarray(100, 2000100))).toBe(true);
  });

  it('resumes a range cut off part-way from the byte it reached, keeping the bytes before it', async () => {
    mode = 'cut';
    cuts = 0;
    asked.length = 0;
    expect((await readAll()).equals(object)).toBe(true);
    expect(cuts).toBe(2);
    // The resumed requests start where the cut ones stopped, each range's first read 3 MiB + 7 bytes in.
    const resumed = asked.filter((a) => !/^bytes=(0|8388608|16777216)-/.test(a));
    expect(resumed.length).toBe(2);
    for (const a of resumed) expect(Number(/^bytes=(\d+)-/.exec(a)![1]) % (8 * MiB)).toBe(3 * MiB + 7);
  });

  it('sends a body framed otherwise (chunked) through node\'s HTTP client, with the same bytes', async () => {
    mode = 'chunked';
    expect((await readAll()).equals(object)).toBe(true);
  });

  it('passes a store\'s errors on as before: a replaced object, a refusal', async () => {
    mode = 'precondition';
    await expect(readAll()).rejects.toMatchObject({ code: 'S3_MISMATCH' });
    mode = 'denied';
    await expect(readAll()).rejects.toMatchObject({ message: expect.stringContaining('AccessDenied') });
  });
});

/**
 * Over https the socket is a TLS one, and node hands it the same `onread`.
 * The client runs in a process of its own: it trusts the test's authority
 * through NODE_EXTRA_CA_CERTS, as an operator's would, read at start-up.
 */
describe('ranged GETs over https', () => {
  const object = randomBytes(9 * MiB + 3);
  let server: HttpsServer;
  let endpoint: string;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jship-test-tls-'));
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      req.resume();
      res.setHeader('ETag', '"0123456789abcdef0123456789abcdef"');
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      const body = range ? object.subarray(Number(range[1]), Number(range[2]) + 1) : object;
      res.writeHead(range ? 206 : 200, { 'Content-Length': String(body.length) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `https://localhost:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const client = (script: string): Promise<{ code: number | null; out: string; err: string }> => new Promise((resolve) => {
    const dist = (f: string): string => JSON.stringify(new URL(`../../dist/s3/${f}`, import.meta.url).href);
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import { GetObjectCommand } from '@aws-sdk/client-s3';
      import { createHash } from 'node:crypto';
      import { DirectBody } from ${dist('direct-get.js')};
      import { S3Source, s3Sources } from ${dist('s3-source.js')};
      import { store } from ${dist('s3-store.js')};
      const settings = { endpoint: ${JSON.stringify(endpoint)}, region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } };
      ${script}`], { cwd: fileURLToPath(new URL('../..', import.meta.url)), env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem'), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });

  it('reads the object byte for byte, the socket writing into the range buffer', async () => {
    const r = await client(`
      const st = await store(settings);
      const r = await st.client.send(new GetObjectCommand({ Bucket: 'vault', Key: 't/x.tar.zst', Range: 'bytes=7-100006' }));
      const buf = Buffer.alloc(100000);
      console.log(r.Body instanceof DirectBody, await r.Body.readInto(buf), createHash('sha256').update(buf).digest('hex'));
      const [src] = await s3Sources('s3://vault/t/jship-000001-0000000000000001.tar.zst', settings);
      const h = createHash('sha256');
      for await (const c of src.chunks()) h.update(c);
      console.log(h.digest('hex'));
      process.exit(0);`);
    expect(r.err).toBe('');
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(r.out.trim().split('\n')).toEqual([`true 100000 ${sha(object.subarray(7, 100007))}`, sha(object)]);
    expect(r.code).toBe(0);
  });

  it('refuses a server whose certificate no authority it trusts vouches for', async () => {
    const r = await client(`
      // The certificate names localhost only. The size and ETag as a listing gives them: the ranged read is the first request.
      const st = await store({ ...settings, endpoint: settings.endpoint.replace('localhost', '127.0.0.1') });
      const src = new S3Source(st, 'vault', 't/jship-000001-0000000000000001.tar.zst', { size: ${object.length}, etag: '"e"' });
      try {
        for await (const c of src.chunks(0, 99)) console.log('read', c.length);
      } catch (e) {
        console.log(e.code, e.cause?.code);
      }
      process.exit(0);`);
    expect({ code: r.code, out: r.out.trim(), err: r.err }).toEqual({ code: 0, out: 'S3_ERROR ERR_TLS_CERT_ALTNAME_INVALID', err: '' });
  });
});
