import { compareLineages, epochStart, generationOf, lineageText } from '../core/epoch.js';
import type { ResyncRequest } from '../core/resync-request.js';
import type { JournalGroup } from './journal-group.js';

/**
 * The chunks (by volume index, at this group's chunk size) an old primary
 * being demoted gets in a resync base: those it says it wrote after the
 * takeover point, and every chunk written in this epoch (epoch.bitmap).
 * Refused (`fail`) when the old primary is not of the epoch right before
 * this one, or names another takeover point: then only a full base is right.
 */
export function resyncChunks(group: JournalGroup, r: ResyncRequest, fail: (why: string) => never): number[][] {
  const mine = group.epochs;
  const theirs = generationOf(r.epochs);
  const written = group.epochDirty();
  if (!written || theirs + 1 !== generationOf(mine) || compareLineages(r.epochs, mine) !== 'older') fail(`it is of epoch ${theirs}; this primary is of ${lineageText(mine)}, not the epoch right after it`);
  const takeover = epochStart(mine, theirs + 1) - 1n;
  if (BigInt(r.fromSeq) !== takeover) fail(`it names seq ${r.fromSeq} as the takeover point; epoch ${theirs + 1} began after seq ${takeover}`);
  if (r.volumes.length !== group.volumes.length) fail(`it lists ${r.volumes.length} volumes; the group has ${group.volumes.length}`);
  const size = group.config.chunkSize;
  return group.volumes.map((v, i) => {
    const set = new Set<number>(written?.chunks[i] ?? []);
    const limit = Math.ceil(v.size / size);
    for (const [first, count] of r.volumes[i] ?? []) {
      // Their chunks in bytes, then in ours (the two chunk sizes may differ).
      const lo = Math.floor((first * r.chunkSize) / size);
      const hi = Math.min(limit, Math.ceil(((first + count) * r.chunkSize) / size));
      for (let c = lo; c < hi; c++) set.add(c);
    }
    return [...set].sort((a, b) => a - b);
  });
}
