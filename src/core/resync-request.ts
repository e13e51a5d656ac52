import { checkLineage, type Lineage } from './epoch.js';

/**
 * What an old primary being demoted (`jship demote`) asks the new primary
 * for instead of a full base: its volumes are the group as of `fromSeq` (the
 * takeover point) except in the listed chunks (its own writes after that
 * point). The new primary answers with a resync base of these chunks and of
 * every chunk written in its epoch. It travels in the link hello, or — when
 * the old primary follows by tapes — as a file carried to the new primary
 * (`jship export --resync-for FILE`), where `id` names the base written for
 * it (the base-started marker's `for`).
 */
export interface ResyncRequest {
  /** The request's id (a file carried to the new primary); absent over the link. */
  id?: string;
  /** The lineage of the demoted group. */
  epochs: Lineage;
  fromSeq: string;
  chunkSize: number;
  /** Per volume, in the group's order: runs of chunk numbers, [first, count]. */
  volumes: Array<Array<[number, number]>>;
}

/** The most runs a request may list (it fits in one link message; coarser chunks when more). */
export const MAX_RESYNC_RUNS = 2000;

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Chunk numbers per volume as runs, coarsened (chunk size doubled) until they fit in MAX_RESYNC_RUNS. */
export function resyncRequest(epochs: Lineage, fromSeq: bigint, chunkSize: number, chunks: number[][], id?: string): ResyncRequest {
  let size = chunkSize;
  let lists = chunks;
  for (;;) {
    const volumes = lists.map((l) => {
      const runs: Array<[number, number]> = [];
      for (const c of l) {
        const last = runs[runs.length - 1];
        if (last && last[0] + last[1] === c) last[1]++;
        else runs.push([c, 1]);
      }
      return runs;
    });
    if (volumes.reduce((n, v) => n + v.length, 0) <= MAX_RESYNC_RUNS) return { ...(id !== undefined ? { id } : {}), epochs, fromSeq: fromSeq.toString(), chunkSize: size, volumes };
    size *= 2;
    lists = lists.map((l) => [...new Set(l.map((c) => Math.floor(c / 2)))]);
  }
}

/** Checks a request read from outside (a link hello, a file); `fail` says what is wrong with which field. */
export function checkResyncRequest(v: unknown, fail: (why: string) => never): ResyncRequest {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('is not an object');
  const o = v as Record<string, unknown>;
  if (o.id !== undefined && (typeof o.id !== 'string' || !ID.test(o.id))) fail('"id" is not a UUID');
  const chunkSize = o.chunkSize;
  if (typeof chunkSize !== 'number' || !Number.isSafeInteger(chunkSize) || chunkSize < 512 || (chunkSize & (chunkSize - 1)) !== 0) fail('"chunkSize" is not a power of two of at least 512');
  if (typeof o.fromSeq !== 'string' || !/^[0-9]{1,20}$/.test(o.fromSeq)) fail('"fromSeq" is not a decimal sequence number');
  if (!Array.isArray(o.volumes) || o.volumes.length === 0 || o.volumes.length > 1024) fail('"volumes" is not a list of 1 to 1024 volumes');
  let runs = 0;
  const volumes = (o.volumes as unknown[]).map((vol) => {
    if (!Array.isArray(vol)) fail('"volumes" holds a volume that is not a list of runs');
    let next = 0;
    return (vol as unknown[]).map((r): [number, number] => {
      const [first, count] = Array.isArray(r) && r.length === 2 ? r : [];
      if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || (first as number) < next || (count as number) < 1 || ++runs > MAX_RESYNC_RUNS) {
        fail(`"volumes" holds a run that is not [first, count] in order (at most ${MAX_RESYNC_RUNS} runs)`);
      }
      next = (first as number) + (count as number);
      return [first as number, count as number];
    });
  });
  const epochs = o.epochs === undefined ? [] : checkLineage(o.epochs, (why) => fail(`"epochs" ${why}`));
  return { ...(o.id !== undefined ? { id: o.id as string } : {}), epochs, fromSeq: o.fromSeq as string, chunkSize: chunkSize as number, volumes };
}
