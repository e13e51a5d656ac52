import { promises as fsp } from 'node:fs';
import { JshipError, isJshipError } from '../core/errors.js';
import type { TapeLabel } from '../tape/label.js';
import type { KeyRing } from '../tape/crypto.js';
import { findTrailer, readLabel, tapeHashFile } from '../tape/tape-file.js';
import { FramePool } from '../tape/frame-pool.js';
import { chainReport, type ChainReport } from './coverage.js';
import { catalogKey, keepListed, noteDigests, noteLabel, scanTape, tapeRow } from './import.js';
import { Replica, type ReplicaWait } from './replica.js';
import { removeExpiring } from './expire.js';

export interface RebuildReport extends ChainReport {
  tapes: Array<{ file: string; serial: number | null; status: 'complete' | 'partial' | 'unreadable'; records: number; message: string | null }>;
}

/**
 * Rebuilds the catalogue from the stored tapes alone (Bacula's bscan lesson):
 * every tape in tapes/ is read and verified again.
 */
export async function rebuildCatalog(dir: string, opts: { keys?: KeyRing; wait?: ReplicaWait } = {}): Promise<RebuildReport> {
  const wait = opts.wait ? { wait: opts.wait } : {};
  // The old catalogue may be damaged or of another schema: keep only what it says about expiry.
  const expired = await (async () => {
    try {
      const r = await Replica.open(dir, wait);
      try {
        // Tapes an expire had taken out of the catalogue and not yet removed (it was killed) are expired, not brought back.
        await removeExpiring(r);
        return { through: r.catalog.getMeta('expiredThrough'), serials: r.catalog.getMeta('expiredSerials') };
      } finally {
        await r.close();
      }
    } catch (e) {
      // Another command uses the replica: refused (before, what an expire had done was forgotten when it let go in between).
      if (isJshipError(e, 'GROUP_LOCKED')) throw e;
      return { through: undefined, serials: undefined };
    }
  })();
  const replica = await Replica.open(dir, { rebuild: true, ...wait });
  const pool = new FramePool();
  try {
    const files = (await fsp.readdir(replica.tapesDir)).filter((n) => n.endsWith('.tar.zst') && !n.startsWith('.')).sort();
    const cat = replica.catalog;
    const tapes: RebuildReport['tapes'] = [];
    const labels: TapeLabel[] = [];
    for (const file of files) {
      const path = replica.tapePath(file);
      try {
        const label = await readLabel(path);
        if (label.groupId !== replica.config.groupId) throw new JshipError('TAPE_FOREIGN', `${file} belongs to group ${label.groupId}, the replica to ${replica.config.groupId}`, { hint: 'move it out of tapes/' });
        const scan = await scanTape(path, label, { ...opts, pool }, (idx, index) => cat.stageIndex(file, idx, index));
        const status = scan.damage ? 'partial' : 'complete';
        if (scan.damage && scan.segments.length === 0) throw scan.damage;
        // A damaged tape keeps only the segments its trailer (when found) lists, as import does.
        const trailer = scan.damage ? await findTrailer(path).catch(() => undefined) : undefined;
        const kept = keepListed(scan, label, trailer);
        const { size } = await fsp.stat(path);
        cat.putTape(tapeRow(label, file, await tapeHashFile(path, label.version), size, status, scan.damage?.message ?? null, kept.segments, scan.trailer), kept.segments, kept.markers, file);
        noteLabel(cat, label);
        if (status === 'complete') noteDigests(cat, scan.trailer);
        labels.push(label);
        tapes.push({ file, serial: catalogKey(label), status, records: kept.segments.reduce((n, s) => n + s.records, 0), message: scan.damage?.message ?? null });
      } catch (e) {
        cat.dropStaged(file);
        if (!isJshipError(e)) throw e;
        tapes.push({ file, serial: null, status: 'unreadable', records: 0, message: e.message });
      }
    }
    if (expired.through) cat.setMeta('expiredThrough', expired.through);
    if (expired.serials) cat.setMeta('expiredSerials', expired.serials);
    const report = { tapes, ...chainReport(cat) };
    // Until here, a rebuild killed left the replica as it was.
    await replica.adoptCatalog();
    // The volumes' sizes are what the stored tapes say, no more (a refused tape never changes them).
    const cfg = replica.config;
    const sizes = cfg.volumes.map((v, i) => labels.reduce((m, l) => Math.max(m, l.volumes[i]?.size ?? 0), 0));
    if (labels.length > 0 && sizes.some((n, i) => n !== cfg.volumes[i]?.size)) {
      cfg.volumes = cfg.volumes.map((v, i) => ({ name: v.name, size: sizes[i] ?? v.size }));
      await replica.saveConfig();
    }
    return report;
  } finally {
    await pool.close();
    await replica.close();
  }
}
