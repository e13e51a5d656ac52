import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FRAME_HEADER, FrameReader, MAX_PAYLOAD, MessageType, decodeFrameHeader, encodeFrame, encodeFrameHeader } from '../../src/link/frame.js';
import {
  decodeConfirm, decodePrimaryHello, decodeSecondaryHello, decodeTapeEnd, expect as expectType, message,
} from '../../src/link/messages.js';
import { parseCandidates } from '../../src/link/candidates.js';
import { parseHostPort } from '../../src/io/sockets.js';
import { JshipError } from '../../src/core/errors.js';

const GOLDEN_READ = '4a534c4b010300000c0000008fb063c47b22776169744d73223a307d';
const GOLDEN_IDLE_EMPTY = '4a534c4b0104000000000000a27c79a0';

function frames(bytes: Buffer, cut: number[] = []): Array<{ type: MessageType; payload: Buffer }> {
  const r = new FrameReader();
  const out = [];
  let at = 0;
  for (const c of [...cut, bytes.length]) {
    r.push(bytes.subarray(at, c));
    at = c;
    for (let f = r.next(); f; f = r.next()) out.push({ type: f.type, payload: Buffer.from(f.payload) });
  }
  return out;
}

describe('link frames', () => {
  it('encodes the documented layout (golden bytes)', () => {
    expect(encodeFrame(MessageType.Read, Buffer.from('{"waitMs":0}')).toString('hex')).toBe(GOLDEN_READ);
    expect(encodeFrame(MessageType.Idle).toString('hex')).toBe(GOLDEN_IDLE_EMPTY);
    const [f] = frames(Buffer.from(GOLDEN_READ, 'hex'));
    expect(f?.type).toBe(MessageType.Read);
    expect(f?.payload.toString()).toBe('{"waitMs":0}');
  });

  it('cuts frames out of a stream however it is split (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.constantFrom(...[1, 3, 4, 5, 6, 7, 8]), fc.uint8Array({ maxLength: 3000 })), { maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (list, cuts) => {
        const bytes = Buffer.concat(list.map(([t, p]) => encodeFrame(t as MessageType, Buffer.from(p))));
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const got = frames(bytes, points);
        expect(got.map((f) => f.type)).toEqual(list.map(([t]) => t));
        got.forEach((f, i) => expect(f.payload.equals(Buffer.from(list[i]![1]))).toBe(true));
        // A header sent before its payload (no copy to frame it) is the same frame.
        for (const [t, p] of list) expect(Buffer.concat([encodeFrameHeader(t as MessageType, Buffer.from(p)), Buffer.from(p)]).equals(encodeFrame(t as MessageType, Buffer.from(p)))).toBe(true);
      },
    ));
  });

  it('refuses corrupt frames: magic, version, type, reserved bytes, size, CRC of header and of payload', () => {
    const good = Buffer.from(GOLDEN_READ, 'hex');
    const bad = (mutate: (b: Buffer) => void): JshipError => {
      const b = Buffer.from(good);
      mutate(b);
      try {
        frames(b);
      } catch (e) {
        return e as JshipError;
      }
      throw new Error('accepted');
    };
    expect(bad((b) => { b[0] = 0x58; }).message).toMatch(/bad frame magic/);
    expect(bad((b) => { b[4] = 2; }).code).toBe('LINK_VERSION');
    expect(bad((b) => { b[5] = 99; }).message).toMatch(/unknown message type 99/);
    expect(bad((b) => { b[6] = 1; }).message).toMatch(/reserved/);
    expect(bad((b) => { b.writeUInt32LE(MAX_PAYLOAD + 1, 8); }).message).toMatch(/larger than the limit/);
    expect(bad((b) => { b.writeUInt8(b.readUInt8(FRAME_HEADER + 3) ^ 1, FRAME_HEADER + 3); }).message).toMatch(/CRC mismatch in a Read frame/);
    expect(bad((b) => { b[5] = MessageType.Idle; }).message).toMatch(/CRC mismatch/);
    expect(() => decodeFrameHeader(Buffer.alloc(3))).toThrow(/frame header of 3 bytes/);
    expect(() => encodeFrame(MessageType.TapeData, Buffer.alloc(MAX_PAYLOAD + 1))).toThrow(JshipError);
  });
});

describe('link messages', () => {
  const f = (type: MessageType, body: unknown) => ({ type, payload: Buffer.from(JSON.stringify(body)) });
  const status = { lastSeq: '10', lastTs: '1700000000000000000', outSeq: '1', inSeq: '11', usagePercent: { metadata: 1, data: 2 }, confirmedSeq: '0' };
  const gid = '0b5e2f6c-3f9e-4d59-9a0e-3c1b0f1f2a3b';

  it('decodes what the sessions send, round trip', () => {
    const hello = { role: 'secondary', groupId: null, name: 'site-b', held: { serial: 3, sha256: 'a'.repeat(64) }, mode: 'pull', epochs: [], lastSeq: null, window: 2 };
    const m = message(MessageType.Hello, hello);
    const [fr] = frames(m);
    expect(decodeSecondaryHello(fr!)).toEqual(hello);
    const primary = { role: 'primary', groupId: gid, volumes: [{ name: 'a', size: 4096 }], host: 'h', status };
    expect(decodePrimaryHello(f(MessageType.Hello, primary)).status).toEqual(status);
    // The window: absent (an older jship) is stop and wait; more than a side takes is its most.
    expect(decodePrimaryHello(f(MessageType.Hello, primary)).window).toBe(1);
    expect(decodePrimaryHello(f(MessageType.Hello, { ...primary, window: 64 })).window).toBe(2);
    const { window: _w, ...older } = hello;
    expect(decodeSecondaryHello(f(MessageType.Hello, older)).window).toBe(1);
    expect(() => decodeSecondaryHello(f(MessageType.Hello, { ...hello, window: 0 }))).toThrow(/"window"/);
    expect(decodeConfirm(f(MessageType.Confirm, { serial: 2, sha256: 'b'.repeat(64) }))).toEqual({ serial: 2, sha256: 'b'.repeat(64) });
  });

  it('refuses malformed messages, naming the field', () => {
    expect(() => decodeSecondaryHello({ type: MessageType.Hello, payload: Buffer.from('not json') })).toThrow(/malformed Hello message: not JSON/);
    expect(() => decodeSecondaryHello(f(MessageType.Hello, { role: 'primary' }))).toThrow(/not a secondary/);
    expect(() => decodeSecondaryHello(f(MessageType.Hello, { role: 'secondary', mode: 'pull', groupId: null, name: '../etc', held: null }))).toThrow(/"name"/);
    expect(() => decodeSecondaryHello(f(MessageType.Hello, { role: 'secondary', mode: 'pull', groupId: 'x', name: 'b', held: null }))).toThrow(/"groupId"/);
    expect(() => decodeSecondaryHello(f(MessageType.Hello, { role: 'secondary', mode: 'pull', groupId: null, name: 'b', held: { serial: 0, sha256: 'a'.repeat(64) } }))).toThrow(/"serial"/);
    expect(() => decodeSecondaryHello(f(MessageType.Hello, { role: 'secondary', mode: 'sideways', groupId: null, name: 'b', held: null }))).toThrow(/"mode"/);
    expect(() => decodeTapeEnd(f(MessageType.TapeEnd, { serial: 1, bytes: 10, sha256: 'zz' }))).toThrow(/"sha256"/);
    expect(() => decodeConfirm(f(MessageType.Confirm, { serial: 1.5, sha256: 'b'.repeat(64) }))).toThrow(/"serial"/);
    expect(() => decodePrimaryHello(f(MessageType.Hello, { role: 'primary', groupId: gid, volumes: [], host: 'h', status }))).toThrow(/"volumes"/);
    expect(() => decodePrimaryHello(f(MessageType.Hello, { role: 'primary', groupId: gid, volumes: [{ name: 'a', size: 1 }], host: 'h', status: { ...status, outSeq: '-1' } }))).toThrow(/"outSeq"/);
    expect(() => decodeSecondaryHello({ type: MessageType.Hello, payload: Buffer.alloc(70_000, 0x20) })).toThrow(/bytes of JSON/);
  });

  it('turns an ERROR from the peer into LINK_REFUSED with its words, and an unexpected type into a protocol error', () => {
    try {
      expectType(f(MessageType.Error, { code: 'LINK_POSITION', message: 'no such tape', hint: 'forget it' }), MessageType.Hello);
      throw new Error('accepted');
    } catch (e) {
      expect((e as JshipError).code).toBe('LINK_REFUSED');
      expect((e as JshipError).message).toMatch(/the peer refused: no such tape/);
      expect((e as JshipError).hint).toBe('forget it');
    }
    expect(() => expectType(f(MessageType.Idle, {}), MessageType.Confirm)).toThrow(/expected Confirm, got Idle/);
  });
});

describe('link arguments', () => {
  it('parses HOST:PORT forms and refuses others', () => {
    expect(parseHostPort('192.0.2.1:7070', '--to')).toEqual({ host: '192.0.2.1', port: 7070 });
    expect(parseHostPort('[::1]:7070', '--to')).toEqual({ host: '::1', port: 7070 });
    expect(parseHostPort('7070', '--to')).toEqual({ host: '127.0.0.1', port: 7070 });
    expect(() => parseHostPort('host:99999', '--to')).toThrow(/is not HOST:PORT/);
    expect(() => parseHostPort('host', '--to')).toThrow(JshipError);
  });

  it('reads a candidates file in priority order and refuses bad ones', () => {
    expect(parseCandidates('[{"address":"10.0.0.2:7070","priority":2},{"address":"10.0.0.1:7070","priority":1}]', 'c.json').map((c) => c.address)).toEqual(['10.0.0.1:7070', '10.0.0.2:7070']);
    expect(() => parseCandidates('{', 'c.json')).toThrow(/c.json: not JSON/);
    expect(() => parseCandidates('[]', 'c.json')).toThrow(/non-empty/);
    expect(() => parseCandidates('[{"address":"a:1"},{"address":"a:1"}]', 'c.json')).toThrow(/listed twice/);
    expect(() => parseCandidates('[{"address":"a:1","priority":"high"}]', 'c.json')).toThrow(/priority/);
    expect(() => parseCandidates('[{"host":"a"}]', 'c.json')).toThrow(/no "address"/);
  });
});
