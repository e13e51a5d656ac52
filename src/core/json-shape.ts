import { formatTime } from './time.js';

/**
 * The one shape of every `--json` output (docs/JSON.md), pure:
 *
 * - Integers are JSON numbers up to 2^53 - 1, decimal strings beyond (a
 *   sequence number may, in principle, pass 2^53; a ns timestamp always does).
 *   Formats kept on disk (tape trailers, chain and replica state) hold
 *   sequence numbers as decimal strings; under the integer names below
 *   (`seq`, `…Seq`, `records`, `…Records`, `…Pos`, `baseId`) a decimal
 *   string becomes an integer by the same rule.
 * - An instant is a pair: `xTs` (or `ts`), nanoseconds since the epoch as a
 *   decimal string, and beside it `xTime` (or `time`), the same instant in ISO
 *   8601 UTC with nine fraction digits. Only the `Ts` member is needed in the
 *   value given; the `Time` member is added here when missing.
 * - Fractions are rounded to three decimals (seconds to the millisecond,
 *   percentages to a thousandth); NaN and infinities are null.
 * - No sentinels: absent is null, never -1 (callers name the thing instead).
 */
export function jsonShape(value: unknown): unknown {
  return shape(value, '');
}

const TS_KEY = /^(?:ts|.+Ts)$/;
const INT_KEY = /^(?:seq|.+Seq|records|.+Records|.+Pos|baseId)$/;
const DIGITS = /^\d+$/;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The key of the ISO member that goes beside a `Ts` key: `ts` → `time`, `firstTs` → `firstTime`. */
function timeKeyOf(tsKey: string): string {
  return tsKey === 'ts' ? 'time' : `${tsKey.slice(0, -2)}Time`;
}

function shape(v: unknown, key: string): unknown {
  if (typeof v === 'bigint') return TS_KEY.test(key) ? v.toString() : integer(v);
  if (typeof v === 'string' && INT_KEY.test(key) && DIGITS.test(v)) return integer(BigInt(v));
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return null;
    return Number.isInteger(v) ? v : Math.round(v * 1000) / 1000;
  }
  if (v === null || typeof v !== 'object') return v;
  const withJson = v as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') return shape(withJson.toJSON(), key);
  if (Array.isArray(v)) return v.map((x) => (x === undefined ? null : shape(x, key)));
  const src = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(src)) {
    if (x === undefined) continue;
    out[k] = shape(x, k);
    if (!TS_KEY.test(k)) continue;
    const tk = timeKeyOf(k);
    if (tk in src) continue;
    const ns = typeof x === 'bigint' ? x : typeof x === 'string' && DIGITS.test(x) ? BigInt(x) : null;
    out[tk] = ns === null ? null : formatTime(ns);
  }
  return out;
}

function integer(v: bigint): number | string {
  return v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : v.toString();
}

/** `jsonShape` as text: one line, no trailing newline. */
export function toJson(value: unknown): string {
  return JSON.stringify(jsonShape(value));
}
