import { JshipError } from './errors.js';

/** Nanoseconds since the Unix epoch, as every journal timestamp is. */
export type Nanos = bigint;

const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)$/i;

/**
 * Parses a TIME as the CLI accepts it: ISO 8601 with a zone (Z or ±HH:MM),
 * with fractions of a second down to nanoseconds, or `@SECONDS[.FRACTION]`
 * since the epoch. A time without a zone is refused: guessing the zone is
 * how restores land an hour off.
 */
export function parseTime(text: string): Nanos {
  const s = text.trim();
  const at = /^@(\d+)(?:\.(\d{1,9}))?$/.exec(s);
  if (at) return inRange(BigInt(at[1] ?? '0') * NS_PER_S + fractionToNanos(at[2]), text);
  const m = ISO.exec(s);
  if (!m) {
    if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?)?$/.test(s)) {
      throw new JshipError('BAD_TIME', `time "${text}" has no time zone`, {
        hint: `add a zone, e.g. "${s.includes('T') || s.includes(' ') ? s : `${s}T00:00:00`}Z" for UTC or "+01:00"; or use @SECONDS since the epoch`,
      });
    }
    throw new JshipError('BAD_TIME', `time "${text}" is not a time`, {
      hint: 'use ISO 8601 with a zone, e.g. 2026-11-24T23:00:00Z or 2026-11-24T23:00:00.123456789+01:00, or @SECONDS[.FRACTION]',
    });
  }
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(sec ?? '0');
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  if (
    Number.isNaN(ms) || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 ||
    check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day
  ) {
    throw new JshipError('BAD_TIME', `time "${text}" is not a valid date and time`, {
      hint: 'check the month, day, hour, minute and second',
    });
  }
  let offsetMin = 0;
  const z = (zone ?? 'Z').toUpperCase();
  if (z !== 'Z') {
    const zm = /^([+-])(\d{2}):?(\d{2})?$/.exec(z);
    const zh = Number(zm?.[2] ?? '0');
    const zmin = Number(zm?.[3] ?? '0');
    if (zh > 23 || zmin > 59) {
      throw new JshipError('BAD_TIME', `time zone "${zone}" in "${text}" is not valid`, { hint: 'write it as ±HH:MM' });
    }
    offsetMin = (zm?.[1] === '-' ? -1 : 1) * (zh * 60 + zmin);
  }
  const base = BigInt(ms) * NS_PER_MS - BigInt(offsetMin) * 60n * NS_PER_S;
  const result = base + fractionToNanos(frac);
  if (result < 0n) {
    throw new JshipError('BAD_TIME', `time "${text}" is before 1970`, { hint: 'journal timestamps start at the epoch' });
  }
  return inRange(result, text);
}

/** Journal timestamps are unsigned 64-bit nanoseconds: up to 2554-07-21. */
const MAX_NS = 2n ** 64n - 1n;

function inRange(ns: Nanos, text: string): Nanos {
  if (ns > MAX_NS) {
    throw new JshipError('BAD_TIME', `time "${text}" is past the last time a journal timestamp can hold (2554-07-21T23:34:33Z)`, { hint: 'check the number of seconds: @SECONDS counts seconds since 1970' });
  }
  return ns;
}

function fractionToNanos(frac: string | undefined): bigint {
  if (!frac) return 0n;
  return BigInt(frac.padEnd(9, '0'));
}

/** Formats nanoseconds since the epoch as ISO 8601 UTC with nine fraction digits. */
export function formatTime(ns: Nanos): string {
  const secs = ns / NS_PER_S;
  const frac = ns % NS_PER_S;
  const iso = new Date(Number(secs) * 1000).toISOString(); // ...:SS.000Z
  return `${iso.slice(0, 19)}.${frac.toString().padStart(9, '0')}Z`;
}

/** A duration: a number with a unit (ms, s, m, h, d), e.g. 30s, 15m, 2h; in nanoseconds. */
export function parseDuration(text: string, what = 'duration'): Nanos {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new JshipError('BAD_TIME', `${what} ${JSON.stringify(text)} is not a duration`, { hint: 'write a number and a unit: 500ms, 30s, 15m, 2h, 1d' });
  const unit = { ms: 1e6, s: 1e9, m: 60e9, h: 3600e9, d: 86400e9 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return BigInt(Math.round(Number(m[1]) * unit));
}
