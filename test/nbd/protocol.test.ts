import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ByteQueue } from '../../src/core/byte-queue.js';
import {
  Cmd, Info, Opt, OptionDataError, REPLY_FLAG_DONE, Rep, decodeInfoRequest, decodeMetaContextRequest, decodeOptionHeader,
  decodeRequest, encodeBlockStatusChunk, encodeErrorChunk, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize,
  encodeInfoExport, encodeOffsetDataHeader, encodeOptionHeader, encodeOptionReply, encodeRequest, encodeServerEntry,
  encodeSimpleReply,
} from '../../src/nbd/protocol.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('NBD codec: golden bytes (big-endian, as proto.md lays them out)', () => {
  it('greeting: NBDMAGIC IHAVEOPT flags', () => {
    expect(hex(encodeGreeting(3))).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
  });

  it('option header and option reply', () => {
    expect(hex(encodeOptionHeader(Opt.GO, 10))).toBe('49484156454f5054' + '00000007' + '0000000a');
    expect(decodeOptionHeader(encodeOptionHeader(Opt.LIST, 0))).toEqual({ magic: 0x49484156454f5054n, option: 3, length: 0 });
    expect(hex(encodeOptionReply(Opt.GO, Rep.ACK))).toBe('0003e889045565a9' + '00000007' + '00000001' + '00000000');
    expect(hex(encodeOptionReply(Opt.INFO, Rep.ERR_UNKNOWN, Buffer.from('x')))).toBe('0003e889045565a9' + '00000006' + '80000006' + '00000001' + '78');
  });

  it('export-name reply with and without the 124 zero bytes', () => {
    expect(hex(encodeExportNameReply(0x10000n, 0x0d, true))).toBe('0000000000010000' + '000d');
    const long = encodeExportNameReply(1n, 1, false);
    expect(long.length).toBe(134);
    expect(long.subarray(10).every((b) => b === 0)).toBe(true);
  });

  it('info replies and server entries', () => {
    expect(hex(encodeInfoExport(4096n, 0x1ed))).toBe('0000' + '0000000000001000' + '01ed');
    expect(hex(encodeInfoBlockSize(1, 4096, 32 << 20))).toBe('0003' + '00000001' + '00001000' + '02000000');
    expect(hex(encodeServerEntry('vol0'))).toBe('00000004' + hex(Buffer.from('vol0')));
  });

  it('request header round trip', () => {
    const r = { magic: 0x25609513, flags: 1, type: Cmd.WRITE, handle: 0xdeadbeefcafef00dn, offset: 1n << 40n, length: 4096 };
    const b = encodeRequest(r);
    expect(hex(b)).toBe('25609513' + '0001' + '0001' + 'deadbeefcafef00d' + '0000010000000000' + '00001000');
    expect(decodeRequest(b)).toEqual(r);
  });

  it('simple and structured replies', () => {
    expect(hex(encodeSimpleReply(7n, 28))).toBe('67446698' + '0000001c' + '0000000000000007');
    expect(hex(encodeOffsetDataHeader(7n, REPLY_FLAG_DONE, 512n, 4))).toBe('668e33ef' + '0001' + '0001' + '0000000000000007' + '0000000c' + '0000000000000200');
    expect(hex(encodeBlockStatusChunk(7n, REPLY_FLAG_DONE, 1, [{ length: 65536, flags: 2 }]))).toBe(
      '668e33ef' + '0001' + '0005' + '0000000000000007' + '0000000c' + '00000001' + '00010000' + '00000002',
    );
    expect(hex(encodeErrorChunk(7n, 22, 'no'))).toBe('668e33ef' + '0001' + '8001' + '0000000000000007' + '00000008' + '00000016' + '0002' + hex(Buffer.from('no')));
  });
});

describe('option data decoding refuses what does not add up', () => {
  const info = (name: string, reqs: number[]): Buffer => {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * reqs.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(reqs.length, 4 + n.length);
    reqs.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
    return b;
  };

  it('decodes INFO/GO and meta-context requests', () => {
    expect(decodeInfoRequest(info('vol0', [Info.BLOCK_SIZE, Info.NAME]))).toEqual({ name: 'vol0', requests: [3, 1] });
    const q = Buffer.from('base:allocation');
    const m = Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.from([0, 0, 0, 1]), Buffer.from([0, 0, 0, q.length]), q]);
    expect(decodeMetaContextRequest(m)).toEqual({ name: '', queries: ['base:allocation'] });
  });

  it('truncated, overlong, trailing bytes and NUL are errors, never reads past the end', () => {
    const good = info('vol0', [1]);
    for (let cut = 0; cut < good.length; cut++) expect(() => decodeInfoRequest(good.subarray(0, cut))).toThrow(OptionDataError);
    expect(() => decodeInfoRequest(Buffer.concat([good, Buffer.from([0])]))).toThrow(/left over/);
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(0xffffffff, 0);
    expect(() => decodeInfoRequest(huge)).toThrow(/at most 4096/);
    expect(() => decodeInfoRequest(info('a\0b', []))).toThrow(/NUL/);
  });
});

describe('ByteQueue', () => {
  it('takes exact sizes across any chunking, joined or as pieces (property, against concatenation)', () => {
    fc.assert(fc.property(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 40 }), { maxLength: 20 }),
      fc.array(fc.record({ n: fc.integer({ min: 0, max: 50 }), skip: fc.boolean(), pieces: fc.boolean() }), { maxLength: 30 }),
      (chunks, ops) => {
        const q = new ByteQueue();
        const pushed = chunks.map((c) => Buffer.from(c));
        const all = Buffer.concat(pushed);
        for (const c of pushed) q.push(c);
        let pos = 0;
        for (const { n, skip, pieces } of ops) {
          if (skip) {
            const k = q.skip(n);
            expect(k).toBe(Math.min(n, all.length - pos));
            pos += k;
          } else if (pieces) {
            const got = q.takePieces(n);
            if (pos + n > all.length) {
              expect(got).toBeUndefined();
            } else {
              expect(got && hex(Buffer.concat(Array.isArray(got) ? got : [got]))).toBe(hex(all.subarray(pos, pos + n)));
              // Views of the chunks as pushed, none empty: nothing is copied.
              for (const p of n === 0 ? [] : Array.isArray(got) ? got : [got]) {
                expect(pushed.some((c) => c.buffer === p?.buffer)).toBe(true);
                if (Array.isArray(got)) expect(p?.length).toBeGreaterThan(0);
              }
              pos += n;
            }
          } else {
            const got = q.take(n);
            if (pos + n > all.length) {
              expect(got).toBeUndefined();
            } else {
              expect(got && hex(got)).toBe(hex(all.subarray(pos, pos + n)));
              pos += n;
            }
          }
          expect(q.length).toBe(all.length - pos);
        }
      },
    ));
  });
});
