import { constants, promises as fsp } from 'node:fs';
import { totalmem } from 'node:os';
import { digestOfLeaves, digestVolume, groupRoot, leafHasher, type LeafHash, type PointDigest, type VolumeDigest } from '../core/volume-digest.js';
import { atPath } from '../core/errors.js';
import type { FramePool } from '../tape/frame-pool.js';

/** What a restore or a mount found, comparing what it produced with the primary's digest of the point. */
export interface PointProof {
  seq: bigint;
  kind: PointDigest['kind'];
  name: string | null;
  /** Every volume compared equals the primary's at the point. */
  equal: boolean;
  /** All of the group's volumes were compared (the group's root matched too). */
  whole: boolean;
  root: string;
  volumes: Array<{ name: string; equal: boolean; expected: string; got: string }>;
}

/**
 * Something to read a volume's bytes from: a mounted point. What `read`
 * returns may be reused by the next read (digestVolume hashes each chunk
 * before it reads the next).
 */
export interface VolumeBytes {
  name: string;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A volume whose leaves are computed whole elsewhere (a restored file, read back on the worker pool: RestoreProof). */
export interface VolumeLeaves {
  name: string;
  leaves(size: number, chunkSize: number): Promise<BigUint64Array>;
}

/**
 * Computes each volume's root over the bytes given (over the size the
 * primary digested) and compares it, and the group's root when every volume
 * is there, with the primary's digest.
 */
export async function provePoint(digest: PointDigest, volumes: ReadonlyArray<VolumeBytes | VolumeLeaves>): Promise<PointProof> {
  // Loaded only for volumes read here (a restore's leaves come from the workers).
  let hash: LeafHash | undefined;
  const got: VolumeDigest[] = [];
  const out: PointProof['volumes'] = [];
  for (const v of volumes) {
    const want = digest.volumes.find((d) => d.name === v.name);
    if (!want) {
      out.push({ name: v.name, equal: false, expected: '(no such volume at the point)', got: '' });
      continue;
    }
    const d = 'leaves' in v
      ? digestOfLeaves(v.name, want.size, digest.chunkSize, await v.leaves(want.size, digest.chunkSize))
      : await digestVolume(v.name, want.size, digest.chunkSize, (hash ??= await leafHasher()), (off, len) => v.read(off, len));
    got.push(d);
    out.push({ name: v.name, equal: d.root === want.root, expected: want.root, got: d.root });
  }
  const whole = digest.volumes.every((d) => got.some((g) => g.name === d.name));
  const equal = out.every((v) => v.equal) && (!whole || groupRoot(digest.volumes.map((d) => got.find((g) => g.name === d.name) as VolumeDigest)) === digest.root);
  return { seq: BigInt(digest.seq), kind: digest.kind, name: digest.name ?? null, equal, whole, root: digest.root, volumes: out };
}

/** The chunks one worker job reads and hashes: 64 MiB of them (at least one). */
const LEAVES_JOB_BYTES = 64 * 1024 * 1024;

/**
 * Bytes written and final that the proof lets wait before it reads them:
 * an eighth of the memory this process may use (the machine's, or its
 * cgroup's limit, where the page cache counts too), at least one region.
 * A restore smaller than that is read back at its end, while the last of
 * it is made durable, as the CPU is free then; a larger one is read back
 * as it goes, before its bytes leave the page cache.
 */
export function proofBacklogBytes(): number {
  const limit = process.constrainedMemory?.() ?? 0;
  const memory = limit > 0 && limit < totalmem() ? limit : totalmem();
  return Math.max(LEAVES_JOB_BYTES, Math.floor(memory / 8));
}

/** What a restore's applier tells as it writes (Applier.coalesced): the regions it will write nothing more into. */
export interface WrittenRegions {
  /** Bytes in a region: whole chunks of the digest. */
  readonly regionBytes: number;
  /** Nothing more will be written in region `region` of volume `volume` (an index into the replica's volumes). */
  final(volume: number, region: number): void;
}

interface ProvedVolume {
  name: string;
  path: string;
  h: fsp.FileHandle;
  /** The size and chunks the primary digested (0 when the point has no such volume: provePoint says so). */
  size: number;
  chunks: number;
  untouched: ((offset: number, length: number) => boolean) | undefined;
  leaves: BigUint64Array;
  started: Uint8Array;
}

/**
 * A restore's proof, read back as the restore goes: each region of a
 * target (64 MiB of the digest's chunks) is read and hashed on the pool's
 * workers once the applier has written all it will write there and more
 * than `backlogBytes` of such regions wait — while its bytes are still in
 * the page cache — instead of all of it once the last byte is written (a
 * volume larger than memory was read from the disk a second time). What
 * waits is read at the end, while the last of it is made durable. What is
 * compared is the same either way: every byte of every target, as the
 * target holds it once nothing more is written there. Chunks `untouched`
 * vouches for (holes of a new file nothing was written to) are hashed as
 * zeros without a read. No chunk crosses between threads.
 */
export class RestoreProof implements WrittenRegions {
  readonly regionBytes: number;
  readonly #pool: FramePool;
  readonly #digest: PointDigest;
  readonly #per: number;
  readonly #volumes = new Map<number, ProvedVolume>();
  readonly #jobs: Array<Promise<void>> = [];
  readonly #backlog: number;
  /** Regions final and not read yet, oldest first: their chunks, those hashed as zeros, and the bytes to read. */
  readonly #waiting: Array<{ v: ProvedVolume; first: number; count: number; zeros: Uint8Array; bytes: number }> = [];
  #waitingBytes = 0;

  private constructor(pool: FramePool, digest: PointDigest, backlogBytes: number) {
    this.#pool = pool;
    this.#digest = digest;
    this.#backlog = backlogBytes;
    this.#per = Math.max(1, Math.floor(LEAVES_JOB_BYTES / digest.chunkSize));
    this.regionBytes = this.#per * digest.chunkSize;
  }

  /** Opens each target (`targets[i]`: volume i's, undefined when not restored) to read it back. */
  static async open(pool: FramePool, digest: PointDigest, targets: ReadonlyArray<{ name: string; path: string; untouched?: ((offset: number, length: number) => boolean) | undefined } | undefined>, backlogBytes = proofBacklogBytes()): Promise<RestoreProof> {
    const proof = new RestoreProof(pool, digest, backlogBytes);
    try {
      for (const [i, t] of targets.entries()) {
        if (!t) continue;
        const size = digest.volumes.find((d) => d.name === t.name)?.size ?? 0;
        const chunks = Math.ceil(size / digest.chunkSize);
        const h = await fsp.open(t.path, constants.O_RDONLY);
        proof.#volumes.set(i, { name: t.name, path: t.path, h, size, chunks, untouched: t.untouched, leaves: new BigUint64Array(chunks), started: new Uint8Array(Math.ceil(chunks / proof.#per)) });
      }
    } catch (e) {
      await proof.close();
      throw e;
    }
    return proof;
  }

  final(volume: number, region: number): void {
    const v = this.#volumes.get(volume);
    if (!v || region >= v.started.length || v.started[region] === 1) return;
    v.started[region] = 1;
    // What nothing touched is final too: known now, it is hashed as zeros and never read (nor waits).
    const first = region * this.#per;
    const count = Math.min(this.#per, v.chunks - first);
    const zeros = new Uint8Array(count);
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const offset = (first + i) * this.#digest.chunkSize;
      const length = Math.min(this.#digest.chunkSize, v.size - offset);
      zeros[i] = v.untouched?.(offset, length) ? 1 : 0;
      if (zeros[i] === 0) bytes += length;
    }
    this.#waiting.push({ v, first, count, zeros, bytes });
    this.#waitingBytes += bytes;
    while (this.#waitingBytes > this.#backlog) this.#readNext();
  }

  /** Reads the region that has waited longest. */
  #readNext(): void {
    const next = this.#waiting.shift();
    if (!next) return;
    const { v, first, count, zeros, bytes } = next;
    this.#waitingBytes -= bytes;
    const job = this.#pool.fileLeaves({ fd: v.h.fd, size: v.size, chunkSize: this.#digest.chunkSize, first, count, zeros }).then(
      (leaves) => void v.leaves.set(leaves, first),
      (e: unknown) => {
        throw atPath(e, v.path);
      },
    );
    job.catch(() => undefined);
    this.#jobs.push(job);
  }

  /** Reads what was not read yet (all of it after an in-order replay), then compares with the primary's digest. */
  async result(): Promise<PointProof> {
    for (const [i, v] of this.#volumes) for (let r = 0; r < v.started.length; r++) this.final(i, r);
    while (this.#waiting.length > 0) this.#readNext();
    await Promise.all(this.#jobs);
    return provePoint(this.#digest, [...this.#volumes.values()].map((v) => ({ name: v.name, leaves: async () => v.leaves })));
  }

  /** Resolves once every read started so far has ended, whatever its outcome. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#jobs);
  }

  /** Waits for every read still running (a worker reads through these descriptors), then closes the targets' files. */
  async close(): Promise<void> {
    await this.settled();
    for (const v of this.#volumes.values()) await v.h.close();
    this.#volumes.clear();
  }
}

/** How a proof reads in a line: "proved equal to the primary at marker m1 (root 3f2a…)". */
export function proofText(p: PointProof): string {
  const at = p.kind === 'restore-point' ? `marker ${p.name}` : `the base completed at seq ${p.seq}`;
  if (p.equal) return `proved equal to the primary at ${at} (${p.whole ? 'group root' : `volume${p.volumes.length > 1 ? 's' : ''} ${p.volumes.map((v) => v.name).join(', ')} of root`} ${p.root.slice(0, 16)}…)`;
  const bad = p.volumes.filter((v) => !v.equal).map((v) => v.name);
  return `NOT equal to the primary at ${at}: volume${bad.length > 1 ? 's' : ''} ${bad.join(', ')} differ${bad.length > 1 ? '' : 's'} from the primary's digest`;
}
