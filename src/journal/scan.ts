import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from '../core/crc32.js';
import xxhash from 'xxhash-wasm';
import { JshipError, param } from '../core/errors.js';
import { formatSize } from '../core/sizes.js';
import { writeFileAtomic, makeDirs } from '../io/files.js';
import { groupPaths, readGroupConfig, writeGroupConfig } from './group-files.js';
import { lockOwner } from '../io/dir-lock.js';
import { JournalGroup } from './journal-group.js';

export const DEFAULT_SCAN_BLOCK = 64 * 1024;
const MAGIC = Buffer.from('JSHIPSC1', 'latin1');
const HEADER = 32;
const READ = 4 * 1024 * 1024;
const MAX_RUN = 1024 * 1024;

/**
 * Block hashes of a volume as of its last scan (GROUP_DIR/scan/NAME.hashes):
 * magic "JSHIPSC1", block size u32, reserved u32, volume size u64, CRC-32 of
 * bytes 0..23 (u32), reserved u32; then one XXH64 per block, little-endian.
 */
interface ScanState {
  blockSize: number;
  size: number;
  hashes: BigUint64Array;
}

export interface ScanVolumeReport {
  name: string;
  /** The first scan of a volume records its hashes and journals nothing (a base covers it). */
  first: boolean;
  changedBlocks: number;
  bytes: number;
  records: number;
  /** The volume grew since the last scan from this size; new blocks count as changes. */
  grownFrom: number | null;
}

export interface ScanReport {
  volumes: ScanVolumeReport[];
  marker: { seq: bigint; timestamp: bigint };
  blockSize: number;
}

function statePath(dir: string, name: string): string {
  return join(dir, 'scan', `${name}.hashes`);
}

async function readState(path: string): Promise<ScanState | undefined> {
  let b: Buffer;
  try {
    b = await fsp.readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  if (b.length < HEADER || !b.subarray(0, 8).equals(MAGIC) || crc32(b.subarray(0, 24)) !== b.readUInt32LE(24)) {
    throw new JshipError('SCAN_STATE_DAMAGED', `${path} is damaged`, { hint: 'delete it: the next scan records new hashes (and journals nothing); take a base (jship export --base) to be safe' });
  }
  const blockSize = b.readUInt32LE(8);
  const size = Number(b.readBigUInt64LE(16));
  const n = Math.ceil(size / blockSize);
  if (b.length !== HEADER + n * 8) throw new JshipError('SCAN_STATE_DAMAGED', `${path} is truncated`, { hint: 'delete it and take a base' });
  const hashes = new BigUint64Array(n);
  for (let i = 0; i < n; i++) hashes[i] = b.readBigUInt64LE(HEADER + i * 8);
  return { blockSize, size, hashes };
}

function encodeState(s: ScanState): Buffer {
  const b = Buffer.alloc(HEADER + s.hashes.length * 8);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(s.blockSize, 8);
  b.writeBigUInt64LE(BigInt(s.size), 16);
  b.writeUInt32LE(crc32(b.subarray(0, 24)), 24);
  s.hashes.forEach((h, i) => b.writeBigUInt64LE(h, HEADER + i * 8));
  return b;
}

/**
 * Accepts volumes that grew outside jship (their last file or device is
 * larger): the group config takes the new size. A volume that shrank, or a
 * volume-group member other than the last that changed size, is refused.
 */
export async function adoptGrownVolumes(dir: string): Promise<Map<string, number>> {
  const config = await readGroupConfig(dir);
  const grown = new Map<string, number>();
  for (const v of config.volumes) {
    const before = v.extents.reduce((n, e) => n + e.size, 0);
    for (const [i, e] of v.extents.entries()) {
      const st = await fsp.stat(e.path).catch(() => undefined);
      if (!st || !st.isFile() || st.size === e.size) continue; // missing or devices: Volume.open reports them
      const last = i === v.extents.length - 1;
      if (st.size < e.size) {
        throw new JshipError('VOLUME_SIZE_MISMATCH', `volume "${v.name}" shrank: ${e.path} has ${formatSize(st.size)}, it had ${formatSize(e.size)}`, {
          hint: 'jship cannot journal a shrink: restore the size, or re-create the group and take a new base',
        });
      }
      if (!last) {
        throw new JshipError('VOLUME_SIZE_MISMATCH', `volume "${v.name}": ${e.path} grew, but it is not the last file of the volume group`, {
          hint: 'growing a file in the middle would move every byte after it: restore its size',
        });
      }
      e.size = st.size;
    }
    const after = v.extents.reduce((n, e) => n + e.size, 0);
    if (after !== before) grown.set(v.name, before);
  }
  if (grown.size > 0) await writeGroupConfig(dir, config);
  return grown;
}

/**
 * Changed-block capture for volumes written outside jship: compares every
 * block with its hash from the last scan and journals the changed blocks as
 * update records, then a "scan" marker. The images are consistent only if the
 * volumes were quiet (or snapshots) while scanned.
 */
export async function scanGroup(dir: string, opts: {
  blockSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Run once the group is open, closed before it is: what the scanning process does for others meanwhile (answers status). */
  whileHeld?: (group: JournalGroup) => Promise<{ close(): Promise<void> }>;
} = {}): Promise<ScanReport> {
  // Growth is adopted into group.json before the group is opened: not while another process owns it.
  const owner = await lockOwner(groupPaths(dir).lock);
  if (owner) {
    throw new JshipError('GROUP_LOCKED', `group ${dir} is in use by process ${owner.pid} on ${owner.host}`, {
      hint: 'one process owns a group at a time: stop that process, or talk to it (its control socket) instead',
      details: { pid: owner.pid, host: owner.host },
    });
  }
  const grown = await adoptGrownVolumes(dir);
  const group = await JournalGroup.open(dir);
  let held: { close(): Promise<void> } | undefined;
  try {
    held = await opts.whileHeld?.(group);
    const { h64Raw } = await xxhash();
    await makeDirs(join(group.dir, 'scan'));
    const total = group.volumes.reduce((n, v) => n + v.size, 0);
    let done = 0;
    const reports: ScanVolumeReport[] = [];
    const states: Array<[string, ScanState]> = [];
    let blockSize = opts.blockSize ?? DEFAULT_SCAN_BLOCK;
    for (const vol of group.volumes) {
      const path = statePath(group.dir, vol.name);
      const prev = await readState(path);
      if (prev && opts.blockSize !== undefined && prev.blockSize !== opts.blockSize) {
        throw new JshipError('USAGE', `volume "${vol.name}" was scanned with ${prev.blockSize}-byte blocks, not ${opts.blockSize}`, {
          hint: `leave out ${param('blockSize')}, or delete ${path} to start over (the next scan then journals nothing)`,
        });
      }
      const bs = prev?.blockSize ?? blockSize;
      blockSize = bs;
      const n = Math.ceil(vol.size / bs);
      const hashes = new BigUint64Array(n);
      const report: ScanVolumeReport = { name: vol.name, first: !prev, changedBlocks: 0, bytes: 0, records: 0, grownFrom: grown.get(vol.name) ?? null };
      let run: { offset: number; parts: Buffer[]; bytes: number } | undefined;
      const flushRun = async (): Promise<void> => {
        if (!run) return;
        await group.journalChange(vol.name, run.offset, Buffer.concat(run.parts));
        report.records++;
        run = undefined;
      };
      for (let off = 0; off < vol.size; off += READ) {
        const len = Math.min(READ, vol.size - off);
        const buf = await vol.read(off, len);
        for (let b = 0; b < len; b += bs) {
          const block = buf.subarray(b, Math.min(len, b + bs));
          const i = (off + b) / bs;
          const h = h64Raw(block);
          hashes[i] = h;
          const changed = prev !== undefined && (i >= prev.hashes.length || (off + b + block.length > prev.size) || prev.hashes[i] !== h);
          if (!changed) {
            await flushRun();
            continue;
          }
          report.changedBlocks++;
          report.bytes += block.length;
          if (run && run.offset + run.bytes === off + b && run.bytes + block.length <= MAX_RUN) {
            run.parts.push(Buffer.from(block));
            run.bytes += block.length;
          } else {
            await flushRun();
            run = { offset: off + b, parts: [Buffer.from(block)], bytes: block.length };
          }
        }
        done += len;
        opts.onProgress?.(done, total);
      }
      await flushRun();
      reports.push(report);
      states.push([path, { blockSize: bs, size: vol.size, hashes }]);
    }
    const marker = await group.appendMarker({
      kind: 'scan',
      volumes: reports.map((r) => ({ name: r.name, changedBlocks: r.changedBlocks, bytes: r.bytes, ...(r.grownFrom !== null ? { grownFrom: r.grownFrom } : {}), ...(r.first ? { first: true } : {}) })),
    });
    await group.flush();
    // Only now, with the records durable: a crash before this re-journals the same blocks next time (harmless).
    for (const [path, s] of states) await writeFileAtomic(path, encodeState(s));
    // What changed outside jship is in the journal now, for every volume scanned before (a first scan journals nothing).
    await group.journaledOutside(reports.filter((r) => !r.first).map((r) => r.name));
    return { volumes: reports, marker, blockSize };
  } finally {
    await held?.close();
    await group.close();
  }
}
