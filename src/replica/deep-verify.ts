import { JshipError, param } from '../core/errors.js';
import type { KeyRing } from '../tape/crypto.js';
import { PointMount } from './mount.js';
import { provePoint, type PointProof } from './prove.js';
import { Replica, type ReplicaWait } from './replica.js';
import type { PointSpec } from './restore-plan.js';

export interface DeepVerification {
  point: string;
  seq: bigint;
  proof: PointProof;
}

/**
 * Proves a point of a replica without writing a target: the point is read
 * through a read-only mount (as `jship mount` serves it: planned as restore
 * plans it, straight from the tapes) and compared with the primary's digest
 * of it. Only restore points and base completions have a digest.
 */
export async function verifyDeep(dir: string, point: PointSpec, opts: { keys?: KeyRing; wait?: ReplicaWait } = {}): Promise<DeepVerification> {
  const mount = await PointMount.open(dir, { point, cacheBytes: 0, ...opts });
  try {
    // Read only, without the lock the mount let go of: an import that took it meanwhile goes on.
    const replica = await Replica.view(dir);
    let digest;
    try {
      digest = replica.catalog.digest(mount.plan.seq);
    } finally {
      await replica.close();
    }
    if (!digest) {
      throw new JshipError('USAGE', `${mount.plan.point} (seq ${mount.plan.seq}) has no digest of the primary's to prove it by`, {
        hint: `only restore points (jship mark) and base completions have one, brought by tapes exported by this release: give ${param('marker')} NAME`,
      });
    }
    return { point: mount.plan.point, seq: mount.plan.seq, proof: await provePoint(digest, mount.exports) };
  } finally {
    await mount.close();
  }
}
