import { constants, promises as fsp } from 'node:fs';
import { digestOfLeaves, digestVolume, groupRoot, leafHasher, type PointDigest, type VolumeDigest } from '../core/volume-digest.js';
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

/** A volume whose leaves are computed whole elsewhere (a restored file, on the worker pool: fileLeavesOnPool). */
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
  const hash = await leafHasher();
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
      : await digestVolume(v.name, want.size, digest.chunkSize, hash, (off, len) => v.read(off, len));
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
 * A file or device as a restore's proof reads it: its leaves computed on
 * the pool's workers (tape/file-leaves.ts), runs of chunks side by side,
 * each read and hashed where it is read — no chunk crosses between
 * threads. Chunks `untouched` vouches for (holes of a new file nothing
 * was written to) are hashed as zeros without a read: the first read of a
 * hole costs the kernel a zeroed page.
 */
export async function fileLeavesOnPool(pool: FramePool, name: string, path: string, untouched?: (offset: number, length: number) => boolean): Promise<VolumeLeaves & { close(): Promise<void> }> {
  const h = await fsp.open(path, constants.O_RDONLY);
  return {
    name,
    async leaves(size, chunkSize) {
      const chunks = Math.ceil(size / chunkSize);
      const per = Math.max(1, Math.floor(LEAVES_JOB_BYTES / chunkSize));
      const jobs: Array<Promise<BigUint64Array>> = [];
      for (let first = 0; first < chunks; first += per) {
        const count = Math.min(per, chunks - first);
        const zeros = new Uint8Array(count);
        for (let i = 0; untouched && i < count; i++) {
          const offset = (first + i) * chunkSize;
          zeros[i] = untouched(offset, Math.min(chunkSize, size - offset)) ? 1 : 0;
        }
        jobs.push(pool.fileLeaves({ fd: h.fd, size, chunkSize, first, count, zeros }));
      }
      // Every job ends before this returns or throws: the descriptor is closed after.
      const done = await Promise.allSettled(jobs);
      const leaves = new BigUint64Array(chunks);
      for (const [k, r] of done.entries()) {
        if (r.status === 'rejected') throw atPath(r.reason, path);
        leaves.set(r.value, k * per);
      }
      return leaves;
    },
    close: () => h.close(),
  };
}

/** How a proof reads in a line: "proved equal to the primary at marker m1 (root 3f2a…)". */
export function proofText(p: PointProof): string {
  const at = p.kind === 'restore-point' ? `marker ${p.name}` : `the base completed at seq ${p.seq}`;
  if (p.equal) return `proved equal to the primary at ${at} (${p.whole ? 'group root' : `volume${p.volumes.length > 1 ? 's' : ''} ${p.volumes.map((v) => v.name).join(', ')} of root`} ${p.root.slice(0, 16)}…)`;
  const bad = p.volumes.filter((v) => !v.equal).map((v) => v.name);
  return `NOT equal to the primary at ${at}: volume${bad.length > 1 ? 's' : ''} ${bad.join(', ')} differ${bad.length > 1 ? '' : 's'} from the primary's digest`;
}
