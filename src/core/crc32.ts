import { loadNative } from './native.js';
import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32, the IEEE polynomial as zlib computes it (docs/FORMAT.md):
 * `crc32(data, previous)` continues a running CRC as `zlib.crc32` does.
 */
export type Crc32 = (data: Uint8Array, value?: number) => number;

/** The check value every CRC-32 (IEEE) implementation must give for "123456789". */
const CHECK_INPUT = new TextEncoder().encode('123456789');
const CHECK_VALUE = 0xcbf43926;
/** Inputs shorter than this go to zlib: 60 bytes cost 153 ns there and 240 ns through the binding; 512 bytes 267 and 159. */
const SMALL = 256;

/**
 * `@node-rs/crc32` (folded carry-less multiplication: 13.6 GB/s here
 * against zlib's 5.0 on 1 MiB, docs/DECISIONS.md) when its prebuilt binary for this
 * platform is installed and gives the check value, split or whole;
 * `zlib.crc32` otherwise (the same function, slower).
 */
function load(): { crc32: Crc32; implementation: 'node-rs' | 'zlib' } {
  const zlib = { crc32: zlibCrc32 as Crc32, implementation: 'zlib' as const };
  let fast: Crc32;
  try {
    const m = loadNative('@node-rs/crc32') as { crc32?: unknown };
    if (typeof m.crc32 !== 'function') return zlib;
    fast = m.crc32 as Crc32;
  } catch {
    return zlib;
  }
  const whole = fast(CHECK_INPUT);
  const split = fast(CHECK_INPUT.subarray(4), fast(CHECK_INPUT.subarray(0, 4)));
  if (whole !== CHECK_VALUE || split !== CHECK_VALUE) return zlib;
  // Below a few hundred bytes (a record's 60-byte header) the binding's call costs more than zlib's loop.
  const both: Crc32 = (data, value) => (data.length < SMALL ? zlibCrc32(data, value) : fast(data, value));
  return { crc32: both, implementation: 'node-rs' };
}

const chosen = load();

/** CRC-32 (IEEE) of `data`, continuing from `value` (0 to start). */
export const crc32: Crc32 = chosen.crc32;

/** Which implementation `crc32` is: a test requires the binding on the platform CI runs on. */
export const CRC32_IMPLEMENTATION = chosen.implementation;
