import { createHash } from 'node:crypto';
import xxhash128 from 'hash-wasm/dist/xxhash128.umd.min.js';

/**
 * The checksum of a segment's stored bytes, written beside it as a tar entry
 * a standard tool checks after `tar -x` (docs/FORMAT.md): SHA-256 on tapes of
 * format versions 2 and 3 (`sha256sum -c`), XXH3-128 from version 4
 * (`xxhsum -c`, Debian's xxhash). The segment hash guards against damage; the
 * tape's identity (the chain's previous-tape hash, duplicates, the link's
 * confirmations) stays the SHA-256 of the whole file (docs/DECISIONS.md).
 */
export type SegmentHashAlgorithm = 'sha256' | 'xxh128';

interface AlgorithmInfo {
  /** Suffix of the sum entry that follows a segment (`segments/NNNNNNNN.jrs` → `segments/NNNNNNNN.sha256`). */
  suffix: string;
  /** Hex digits of a hash. */
  hexDigits: number;
  /** Its name in messages. */
  title: string;
}

export const SEGMENT_HASHES: Readonly<Record<SegmentHashAlgorithm, AlgorithmInfo>> = {
  sha256: { suffix: '.sha256', hexDigits: 64, title: 'SHA-256' },
  xxh128: { suffix: '.xxh128', hexDigits: 32, title: 'XXH3-128' },
};

/** The segment hash of a tape of format `version`. */
export function segmentHashOf(version: number): SegmentHashAlgorithm {
  return version >= 4 ? 'xxh128' : 'sha256';
}

// One hasher a thread: created once, then used synchronously. hash-wasm instantiates its WebAssembly
// asynchronously; it is awaited by the callers (segmentHashReady), never at the top level of this module: a
// module awaiting at its top level crashed V8 now and then when loaded in a worker (nodejs/node#53238).
let xxh128: Awaited<ReturnType<typeof xxhash128.createXXHash128>> | undefined;
let loading: Promise<void> | undefined;

/** Resolves once hashSegment can be called in this thread; awaited before the first segment is hashed. */
export function segmentHashReady(): Promise<void> {
  loading ??= xxhash128.createXXHash128().then((h) => {
    xxh128 = h;
  });
  return loading;
}

/** The hash of `bytes` as hex (XXH3-128 in its canonical form, as `xxhsum -H2` prints it). */
export function hashSegment(algorithm: SegmentHashAlgorithm, bytes: Uint8Array): string {
  if (algorithm === 'sha256') return createHash('sha256').update(bytes).digest('hex');
  if (!xxh128) throw new Error('internal: an XXH3-128 hash before segmentHashReady() resolved');
  xxh128.init();
  xxh128.update(bytes);
  return xxh128.digest('hex');
}

/** The name of the sum entry that follows segment `name`. */
export function sumEntryName(name: string, algorithm: SegmentHashAlgorithm): string {
  return name.replace(/\.jrs$/, SEGMENT_HASHES[algorithm].suffix);
}

/** The algorithm a sum entry's name says, when it is the sum entry of segment `segment`. */
export function sumEntryAlgorithm(name: string, segment: string): SegmentHashAlgorithm | undefined {
  return (Object.keys(SEGMENT_HASHES) as SegmentHashAlgorithm[]).find((a) => sumEntryName(segment, a) === name);
}

/** A sum entry's content: one line in the format of `sha256sum` and `xxhsum` (hash, two spaces, name). */
export function sumLine(hash: string, name: string): Buffer {
  return Buffer.from(`${hash}  ${name}\n`, 'latin1');
}

/** The hash a sum entry's content gives for an algorithm, or undefined when it is not such a line. */
export function parseSumLine(content: Buffer, algorithm: SegmentHashAlgorithm): string | undefined {
  const hash = /^([0-9a-f]+) {2}/.exec(content.toString('latin1'))?.[1];
  return isHashOf(algorithm, hash) ? hash : undefined;
}

/** Whether `s` is a hash of `algorithm`, as hex. */
export function isHashOf(algorithm: SegmentHashAlgorithm, s: unknown): s is string {
  return typeof s === 'string' && s.length === SEGMENT_HASHES[algorithm].hexDigits && /^[0-9a-f]+$/.test(s);
}
