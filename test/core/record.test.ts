import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  FLAG_BASE_ZERO, GROUP_VOLUME, RECORD_SIZE, RecordType, decodeRecord, encodeRecord, verifyData, type RecordHeader,
} from '../../src/core/record.js';
import { isJshipError } from '../../src/core/errors.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/record/${name}`, import.meta.url));

const update: RecordHeader = {
  type: RecordType.Update, flags: 0, volume: 1, seq: 0x0102030405060708n, timestamp: 1795598559615000000n,
  offset: 1048576, length: 16, dataPos: 4096n, aux: 0n, dataCrc: crc32(Buffer.from('hello, journal!\n')),
};

describe('record codec', () => {
  it('encodes an update to the golden bytes and decodes them back', () => {
    const golden = fixture('update.bin');
    expect(encodeRecord(update).equals(golden)).toBe(true);
    expect(decodeRecord(golden)).toEqual(update);
    // The byte table of docs/FORMAT.md, field by field.
    expect(golden.subarray(0, 2).toString('latin1')).toBe('JR');
    expect(golden[2]).toBe(1);
    expect(golden[3]).toBe(RecordType.Update);
    expect(golden.readUInt16LE(6)).toBe(1);
    expect(golden.readBigUInt64LE(8)).toBe(0x0102030405060708n);
    expect(golden.readBigUInt64LE(24)).toBe(1048576n);
    expect(golden.readUInt32LE(60)).toBe(crc32(golden.subarray(0, 60)));
    verifyData(update, fixture('update.data'));
  });

  it('round-trips the trim and zero-base golden records', () => {
    for (const name of ['trim.bin', 'base-zero.bin']) {
      const golden = fixture(name);
      const h = decodeRecord(golden);
      expect(encodeRecord(h).equals(golden)).toBe(true);
    }
    const base = decodeRecord(fixture('base-zero.bin'));
    expect(base.type).toBe(RecordType.Base);
    expect(base.flags).toBe(FLAG_BASE_ZERO);
    expect(base.aux).toBe(40n);
  });

  it('decodes at an offset inside a larger buffer', () => {
    const buf = Buffer.alloc(200);
    encodeRecord(update, buf, 70);
    expect(decodeRecord(buf, 70)).toEqual(update);
  });

  it('refuses every truncation with RECORD_TRUNCATED', () => {
    const golden = fixture('update.bin');
    for (let n = 0; n < RECORD_SIZE; n++) {
      expect(() => decodeRecord(golden.subarray(0, n))).toThrowError(expect.objectContaining({ code: 'RECORD_TRUNCATED' }));
    }
  });

  it('refuses every single bit flip with a named error', () => {
    for (const name of ['update.bin', 'trim.bin', 'base-zero.bin']) {
      const golden = fixture(name);
      for (let bit = 0; bit < RECORD_SIZE * 8; bit++) {
        const b = Buffer.from(golden);
        b[bit >> 3] = (b[bit >> 3] as number) ^ (1 << (bit & 7));
        let err: unknown;
        try {
          decodeRecord(b);
        } catch (e) {
          err = e;
        }
        expect(isJshipError(err), `${name} bit ${bit}`).toBe(true);
        expect(['RECORD_BAD_MAGIC', 'RECORD_BAD_CRC'], `${name} bit ${bit}`).toContain((err as { code: string }).code);
      }
    }
  });

  it('refuses damaged data with DATA_BAD_CRC and short data with RECORD_TRUNCATED', () => {
    const data = Buffer.from(fixture('update.data'));
    data[3] = (data[3] as number) ^ 0x10;
    expect(() => verifyData(update, data)).toThrowError(expect.objectContaining({ code: 'DATA_BAD_CRC' }));
    expect(() => verifyData(update, data.subarray(0, 15))).toThrowError(expect.objectContaining({ code: 'RECORD_TRUNCATED' }));
  });

  it('refuses inconsistent fields even when the checksum matches', () => {
    const bad: Array<[Partial<RecordHeader>, string]> = [
      [{ type: RecordType.Marker }, 'volume'],
      [{ volume: GROUP_VOLUME }, 'volume'],
      [{ type: RecordType.Trim, dataCrc: 5 }, 'dataCrc'],
      [{ aux: 3n }, 'aux'],
      [{ seq: 0n }, 'seq'],
      [{ length: 0 }, 'length'],
      [{ flags: 0x8000 }, 'flags'],
    ];
    for (const [change, field] of bad) {
      expect(() => encodeRecord({ ...update, ...change })).toThrowError(new RegExp(field));
    }
    // Forge a record with a valid CRC but an unknown type: decode names it.
    const b = Buffer.from(fixture('update.bin'));
    b[3] = 99;
    b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
    expect(() => decodeRecord(b)).toThrowError(expect.objectContaining({ code: 'RECORD_BAD_TYPE' }));
    b[3] = 1;
    b[2] = 2;
    b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
    expect(() => decodeRecord(b)).toThrowError(expect.objectContaining({ code: 'RECORD_BAD_VERSION' }));
  });

  it('round-trips any valid header (property)', () => {
    const header = fc.record({
      type: fc.constantFrom(RecordType.Update, RecordType.Zero, RecordType.Trim, RecordType.Base),
      volume: fc.integer({ min: 0, max: 0xfffe }),
      seq: fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
      timestamp: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      offset: fc.integer({ min: 0, max: 2 ** 52 }),
      length: fc.integer({ min: 1, max: 32 * 1024 * 1024 }),
      dataPos: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      aux: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      dataCrc: fc.integer({ min: 0, max: 0xffffffff }),
    }).map((h): RecordHeader => ({
      ...h,
      flags: 0,
      aux: h.type === RecordType.Base ? h.aux : 0n,
      dataCrc: h.type === RecordType.Zero || h.type === RecordType.Trim ? 0 : h.dataCrc,
    }));
    fc.assert(fc.property(header, (h) => {
      expect(decodeRecord(encodeRecord(h))).toEqual(h);
    }));
  });
});
