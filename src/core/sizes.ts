import { JshipError } from './errors.js';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * Parses a SIZE: a whole number of bytes with an optional suffix K, M, G or T
 * (powers of 1024; an optional trailing "B" or "iB" is accepted: 4G, 4GB, 4GiB).
 * The result must be a safe integer.
 */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) {
    throw new JshipError('BAD_SIZE', `${what} "${text}" is not a size`, {
      hint: 'write a whole number of bytes, optionally with K, M, G or T (powers of 1024), e.g. 512M',
    });
  }
  const unit = UNITS[(m[2] ?? '').toUpperCase()] ?? 1;
  const value = Number(m[1]) * unit;
  if (!Number.isSafeInteger(value)) {
    throw new JshipError('BAD_SIZE', `${what} "${text}" is too large`, { hint: 'sizes must be below 8 PiB' });
  }
  return value;
}

/**
 * Parses a bandwidth limit as rclone's --bwlimit does: bytes per second with
 * K, M, G (powers of 1024; a bare number is KiB/s, as in rclone), an optional
 * "/s"; "off" or 0 is no limit (null).
 */
export function parseRate(text: string, what = '--bwlimit'): number | null {
  const t = text.trim().replace(/\/s$/i, '');
  if (/^(off|0+)$/i.test(t)) return null;
  const bare = /^\d+$/.test(t);
  const bytes = parseSize(bare ? `${t}K` : t, what);
  if (bytes < 1024) throw new JshipError('BAD_SIZE', `${what} "${text}" is below 1 KiB/s`, { hint: 'e.g. --bwlimit 20M (20 MiB/s), --bwlimit 512K, or --bwlimit off' });
  return bytes;
}

/** Formats bytes for people: 1.5 GiB, 512 KiB, 100 B. */
export function formatSize(bytes: number | bigint): string {
  let n = Number(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  if (i === 0) return `${n} B`;
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)} ${units[i]}`;
}
