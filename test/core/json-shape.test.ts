import { describe, expect, it } from 'vitest';
import { jsonShape, toJson } from '../../src/core/json-shape.js';

describe('jsonShape: the one shape of --json outputs', () => {
  it('integers as numbers up to 2^53 - 1, as strings past it; ns timestamps as strings with their ISO beside', () => {
    expect(toJson({ seq: 1032n, big: 2n ** 53n, neg: -(2n ** 53n) + 1n, firstTs: 1796276531201000000n }))
      .toBe('{"seq":1032,"big":"9007199254740992","neg":-9007199254740991,"firstTs":"1796276531201000000","firstTime":"2026-12-03T05:42:11.201000000Z"}');
    expect(jsonShape({ ts: 5n })).toEqual({ ts: '5', time: '1970-01-01T00:00:00.000000005Z' });
  });

  it('keeps an ISO member already there, gives null for a null ts, leaves other strings alone', () => {
    expect(jsonShape({ ts: 5n, time: 'given' })).toEqual({ ts: '5', time: 'given' });
    expect(jsonShape({ lastTs: null, name: '123', path: '/a' })).toEqual({ lastTs: null, lastTime: null, name: '123', path: '/a' });
  });

  it('decimal strings under the integer names of on-disk formats become integers', () => {
    expect(jsonShape({ seq: '7', firstSeq: '99999999999999999999', records: '3', firstPos: '10', baseId: '4', from: '5', note: '6' }))
      .toEqual({ seq: 7, firstSeq: '99999999999999999999', records: 3, firstPos: 10, baseId: 4, from: '5', note: '6' });
  });

  it('rounds fractions to three decimals, NaN and infinities to null; drops undefined; nests into arrays and toJSON', () => {
    expect(jsonShape({ a: 0.19393042190969653, b: 6.0005, c: Number.NaN, d: Number.POSITIVE_INFINITY, e: undefined, f: [1.23456, undefined] }))
      .toEqual({ a: 0.194, b: 6.001, c: null, d: null, f: [1.235, null] });
    expect(jsonShape({ when: new Date(0), inner: { toJSON: () => ({ seq: 2n }) } })).toEqual({ when: '1970-01-01T00:00:00.000Z', inner: { seq: 2 } });
  });
});
