import { createHash } from 'node:crypto';
import xxhash from 'xxhash-wasm';
import { JshipError } from './errors.js';

/**
 * The digest of a group's volumes at a point (a restore point, a base's
 * completion): each volume is cut in chunks of the group's chunk size, each
 * chunk hashed with XXH64 (seed 0; the last chunk as long as the volume
 * leaves it), the leaves (8 bytes each, little-endian, in chunk order)
 * hashed with SHA-256 into the volume's root; the group's root is the
 * SHA-256 of each volume's name, a zero byte, its size (8 bytes LE) and its
 * root (32 bytes), in volume order. A two-level Merkle tree: a restore or a
 * mount computes the same root over what it produces, so equal roots prove
 * equal bytes (docs/FORMAT.md "Point digests"). Pure: hashing only.
 */
export const DIGEST_ALGORITHM = 'xxh64-chunks-sha256-v1';

export interface VolumeDigest {
  name: string;
  size: number;
  /** SHA-256 of the volume's chunk hashes, hex. */
  root: string;
}

export interface PointDigest {
  algorithm: typeof DIGEST_ALGORITHM;
  /** The sequence number of the marker whose point it is (decimal). */
  seq: string;
  /** That marker's kind and, for a restore point, its name. */
  kind: 'restore-point' | 'base-complete';
  name?: string;
  chunkSize: number;
  volumes: VolumeDigest[];
  /** The group's root, hex. */
  root: string;
}

/** XXH64 of a chunk, as an unsigned 64-bit integer. */
export type LeafHash = (chunk: Uint8Array) => bigint;

let hasher: Promise<LeafHash> | undefined;
/** XXH64 with seed 0 (xxhash-wasm, as the changed-block scan uses). */
export function leafHasher(): Promise<LeafHash> {
  hasher ??= xxhash().then(({ h64Raw }) => (b: Uint8Array) => h64Raw(b));
  return hasher;
}

/** The chunk hashes of one volume, and which chunks were written since they were last brought up to date. */
export class ChunkTable {
  readonly size: number;
  readonly chunkSize: number;
  readonly leaves: BigUint64Array;
  /** One byte a chunk: 1 = written since its leaf was computed. */
  readonly dirty: Uint8Array;

  constructor(size: number, chunkSize: number, leaves?: BigUint64Array, dirty?: Uint8Array) {
    const n = Math.ceil(size / chunkSize);
    if (!Number.isSafeInteger(n) || chunkSize < 512) throw new JshipError('USAGE', `a chunk table of ${size} bytes in chunks of ${chunkSize}`);
    this.size = size;
    this.chunkSize = chunkSize;
    this.leaves = leaves ?? new BigUint64Array(n);
    this.dirty = dirty ?? new Uint8Array(n).fill(1);
    if (this.leaves.length !== n || this.dirty.length !== n) throw new JshipError('USAGE', 'a chunk table with the wrong number of chunks');
  }

  get chunks(): number {
    return this.leaves.length;
  }

  /** The chunk's byte range. */
  range(chunk: number): [number, number] {
    const start = chunk * this.chunkSize;
    return [start, Math.min(this.chunkSize, this.size - start)];
  }

  markDirty(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.min(this.chunks - 1, Math.floor((offset + length - 1) / this.chunkSize));
    for (let c = Math.floor(offset / this.chunkSize); c <= last; c++) this.dirty[c] = 1;
  }

  /** The dirty chunks as runs [first, count], cleared: their leaves are to be computed now. */
  takeDirty(): Array<[number, number]> {
    const runs: Array<[number, number]> = [];
    for (let c = 0; c < this.chunks; c++) {
      if (this.dirty[c] !== 1) continue;
      let e = c;
      while (e + 1 < this.chunks && this.dirty[e + 1] === 1) e++;
      runs.push([c, e - c + 1]);
      this.dirty.fill(0, c, e + 1);
      c = e;
    }
    return runs;
  }

  /** The volume's root over the leaves as they are. */
  root(): string {
    return leavesRoot(this.leaves);
  }
}

/** SHA-256 over the leaves, 8 bytes each, little-endian. */
function leavesRoot(leaves: BigUint64Array): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(Math.min(leaves.length, 65536) * 8);
  for (let i = 0; i < leaves.length; i += 65536) {
    const n = Math.min(65536, leaves.length - i);
    for (let j = 0; j < n; j++) buf.writeBigUInt64LE(leaves[i + j] as bigint, j * 8);
    h.update(buf.subarray(0, n * 8));
  }
  return h.digest('hex');
}

/** The group's root over its volumes' roots. */
export function groupRoot(volumes: ReadonlyArray<VolumeDigest>): string {
  const h = createHash('sha256');
  for (const v of volumes) {
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(v.size));
    h.update(Buffer.from(v.name, 'utf8')).update(Buffer.of(0)).update(size).update(Buffer.from(v.root, 'hex'));
  }
  return h.digest('hex');
}

/**
 * Computes a volume's root from its bytes, read in chunk order by `read`
 * (a restored target, a mounted point): the other side of the proof. Chunks
 * `zeros` vouches for (never written into a new file) are not read.
 */
export async function digestVolume(name: string, size: number, chunkSize: number, hash: LeafHash, read: (offset: number, length: number) => Promise<Uint8Array>,
  zeros?: (offset: number, length: number) => boolean): Promise<VolumeDigest> {
  const table = new ChunkTable(size, chunkSize);
  // Chunks known to be zeros (`zeros`: holes of a new file) are not read; their leaf is the zeros' hash.
  const zeroLeaves = new Map<number, bigint>();
  for (let c = 0; c < table.chunks; c++) {
    const [off, len] = table.range(c);
    if (zeros?.(off, len)) {
      let leaf = zeroLeaves.get(len);
      if (leaf === undefined) zeroLeaves.set(len, (leaf = hash(new Uint8Array(len))));
      table.leaves[c] = leaf;
    } else {
      table.leaves[c] = hash(await read(off, len));
    }
  }
  return { name, size, root: table.root() };
}

/** A volume's digest from the leaves of all its chunks (computed elsewhere: a restore's proof on the worker pool). */
export function digestOfLeaves(name: string, size: number, chunkSize: number, leaves: BigUint64Array): VolumeDigest {
  return { name, size, root: new ChunkTable(size, chunkSize, leaves, new Uint8Array(leaves.length)).root() };
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Checks a digest read from a tape's trailer or a replica's catalogue (every field, every bound). */
export function checkPointDigest(v: unknown, where: string): PointDigest {
  const d = v as Record<string, unknown>;
  const bad = (why: string): never => {
    throw new JshipError('TAPE_BAD_LABEL', `${where}: point digest ${why}`, { hint: 'the trailer is not one jship writes: a foreign or damaged tape' });
  };
  if (typeof d !== 'object' || d === null) return bad('is not an object');
  if (d.algorithm !== DIGEST_ALGORITHM) bad(`algorithm ${String(d.algorithm)} is not ${DIGEST_ALGORITHM}`);
  if (typeof d.seq !== 'string' || !/^\d{1,20}$/.test(d.seq)) bad('seq is not a decimal string');
  if (d.kind !== 'restore-point' && d.kind !== 'base-complete') bad('kind is not restore-point or base-complete');
  if (d.name !== undefined && (typeof d.name !== 'string' || d.name.length > 128)) bad('name is not a marker name');
  if (!Number.isSafeInteger(d.chunkSize) || (d.chunkSize as number) < 512 || (d.chunkSize as number) > 1 << 30) bad('chunkSize is out of range');
  if (!Array.isArray(d.volumes) || d.volumes.length === 0 || d.volumes.length > 1024) bad('volumes is not a list of 1..1024');
  for (const x of d.volumes as unknown[]) {
    const o = x as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.name !== 'string' || !Number.isSafeInteger(o.size) || (o.size as number) < 0 || typeof o.root !== 'string' || !HEX64.test(o.root)) bad('has a volume that is not {name, size, root}');
  }
  if (typeof d.root !== 'string' || !HEX64.test(d.root)) bad('root is not a SHA-256');
  if (groupRoot(d.volumes as VolumeDigest[]) !== d.root) bad('root does not match its volumes');
  return d as unknown as PointDigest;
}
