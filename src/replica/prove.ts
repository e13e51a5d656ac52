import { constants, promises as fsp } from 'node:fs';
import { readInto } from '../io/files.js';
import { digestVolume, groupRoot, leafHasher, type PointDigest, type VolumeDigest } from '../core/volume-digest.js';

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
 * Something to read a volume's bytes from: a restored file or device, a
 * mounted point. What `read` returns may be reused by the next read
 * (digestVolume hashes each chunk before it reads the next).
 */
export interface VolumeBytes {
  name: string;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Ranges known to be zeros without reading them (holes of a new file nothing was written to). */
  untouched?: ((offset: number, length: number) => boolean) | undefined;
}

/**
 * Computes each volume's root over the bytes given (over the size the
 * primary digested) and compares it, and the group's root when every volume
 * is there, with the primary's digest.
 */
export async function provePoint(digest: PointDigest, volumes: readonly VolumeBytes[]): Promise<PointProof> {
  const hash = await leafHasher();
  const got: VolumeDigest[] = [];
  const out: PointProof['volumes'] = [];
  for (const v of volumes) {
    const want = digest.volumes.find((d) => d.name === v.name);
    if (!want) {
      out.push({ name: v.name, equal: false, expected: '(no such volume at the point)', got: '' });
      continue;
    }
    const d = await digestVolume(v.name, want.size, digest.chunkSize, hash, (off, len) => v.read(off, len), v.untouched);
    got.push(d);
    out.push({ name: v.name, equal: d.root === want.root, expected: want.root, got: d.root });
  }
  const whole = digest.volumes.every((d) => got.some((g) => g.name === d.name));
  const equal = out.every((v) => v.equal) && (!whole || groupRoot(digest.volumes.map((d) => got.find((g) => g.name === d.name) as VolumeDigest)) === digest.root);
  return { seq: BigInt(digest.seq), kind: digest.kind, name: digest.name ?? null, equal, whole, root: digest.root, volumes: out };
}

/** Chunks known to be zeros skipped, at most, to find the one to read ahead. */
const LOOK_AHEAD = 64;

/**
 * Reads a file or device (read-only, in whole chunks; bytes past its end
 * read as zeros) into two buffers used in turn: a proof reads the whole
 * volume, and fresh memory for every chunk cost more in page faults than
 * the reading (4 GiB: 12 s of system time). While the caller hashes a
 * chunk, the next one it will read (the same length, the first after it
 * that `untouched` does not call zeros) is read into the other buffer; a
 * read of anything else waits for that read to end and reads what was
 * asked. What `read` returned stays as it is until the next
 * `read` (VolumeBytes). `untouched`: see VolumeBytes (the first read of a
 * hole costs the kernel a zeroed page).
 */
export async function fileBytes(name: string, path: string, untouched?: VolumeBytes['untouched']): Promise<VolumeBytes & { close(): Promise<void> }> {
  const h = await fsp.open(path, constants.O_RDONLY);
  const slots = [Buffer.alloc(0), Buffer.alloc(0)];
  let given = 0; // the slot the caller holds
  let ahead: { offset: number; length: number; slot: number; bytes: Promise<number> } | undefined;
  const slot = (i: number, length: number): Buffer => {
    if ((slots[i] as Buffer).length < length) slots[i] = Buffer.allocUnsafeSlow(length);
    return (slots[i] as Buffer).subarray(0, length);
  };
  const settle = async (): Promise<void> => {
    const a = ahead;
    ahead = undefined;
    await a?.bytes.catch(() => undefined);
  };
  return {
    name,
    untouched,
    async read(offset, length) {
      let b: Buffer;
      let n: number;
      if (ahead && ahead.offset === offset && ahead.length === length) {
        const a = ahead;
        ahead = undefined;
        given = a.slot;
        b = slot(given, length);
        n = await a.bytes;
      } else {
        // Nothing may still be reading into a buffer handed out next.
        await settle();
        given = 1 - given;
        b = slot(given, length);
        n = await readInto(h, b, offset);
      }
      // The next chunk a proof reads: the next one not known to be zeros (those it does not read).
      let at = offset + length;
      for (let i = 0; i < LOOK_AHEAD && untouched?.(at, length); i++) at += length;
      if (!untouched?.(at, length)) {
        const next = 1 - given;
        const bytes = readInto(h, slot(next, length), at);
        bytes.catch(() => undefined); // a failed read-ahead fails the read that uses it, and no other
        ahead = { offset: at, length, slot: next, bytes };
      }
      b.fill(0, n);
      return b;
    },
    close: async () => {
      await settle();
      await h.close();
    },
  };
}

/** How a proof reads in a line: "proved equal to the primary at marker m1 (root 3f2a…)". */
export function proofText(p: PointProof): string {
  const at = p.kind === 'restore-point' ? `marker ${p.name}` : `the base completed at seq ${p.seq}`;
  if (p.equal) return `proved equal to the primary at ${at} (${p.whole ? 'group root' : `volume${p.volumes.length > 1 ? 's' : ''} ${p.volumes.map((v) => v.name).join(', ')} of root`} ${p.root.slice(0, 16)}…)`;
  const bad = p.volumes.filter((v) => !v.equal).map((v) => v.name);
  return `NOT equal to the primary at ${at}: volume${bad.length > 1 ? 's' : ''} ${bad.join(', ')} differ${bad.length > 1 ? '' : 's'} from the primary's digest`;
}
