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
