import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeMarker } from '../core/marker.js';
import { RecordType } from '../core/record.js';
import { applyToImages, compareReplayOrder } from '../core/replay.js';
import { formatSize } from '../core/sizes.js';
import { formatTime } from '../core/time.js';
import { createGroup, JournalGroup } from '../journal/journal-group.js';
import type { JournalRecord } from '../journal/journal-volume.js';

export interface DemoCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DemoResult {
  dir: string;
  checks: DemoCheck[];
  ok: boolean;
}

const MiB = 1024 * 1024;

/**
 * The primary-side flow on local files, narrated through `say`: a group of
 * two volumes (one a volume group of two files), writes at several moments,
 * a named restore point, a base taken while writes go on, and checks that
 * the journal and the base rebuild exactly what was written.
 */
export async function runDemo(dir: string, say: (line: string) => void): Promise<DemoResult> {
  const checks: DemoCheck[] = [];
  const check = (name: string, ok: boolean, detail: string): void => {
    checks.push({ name, ok, detail });
    say(`  ${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };
  await fsp.mkdir(dir, { recursive: true });
  const groupDir = join(dir, 'primary');
  const sizes = [8 * MiB, 4 * MiB];
  say(`1. creating journal group ${groupDir}: volume "db" (8 MiB) and volume group "logs" (two 2 MiB files), 16 MiB journal`);
  await createGroup(groupDir, {
    volumes: [
      { name: 'db', extents: [{ path: join(dir, 'db.img'), size: 8 * MiB }] },
      { name: 'logs', extents: [{ path: join(dir, 'logs-1.img'), size: 2 * MiB }, { path: join(dir, 'logs-2.img'), size: 2 * MiB }] },
    ],
    journalSize: 16 * MiB,
    chunkSize: 256 * 1024,
  });
  const group = await JournalGroup.open(groupDir);
  const model = sizes.map((s) => Buffer.alloc(s));
  const writes = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      const v = i % 2;
      const size = model[v]?.length ?? 0;
      const len = 512 * (1 + Math.floor(Math.random() * 64));
      const off = Math.floor(Math.random() * ((size - len) / 512)) * 512;
      const roll = Math.random();
      if (roll < 0.85) {
        const data = randomBytes(len);
        await group.write(v, off, data);
        data.copy(model[v] as Buffer, off);
      } else if (roll < 0.93) {
        await group.writeZeroes(v, off, len);
        model[v]?.fill(0, off, off + len);
      } else {
        await group.trim(v, off, len);
        model[v]?.fill(0, off, off + len);
      }
    }
  };
  try {
    say('2. writing 300 blocks (writes, zeroes, trims) through the library API');
    await writes(300);
    const markAt = model.map((m) => Buffer.from(m));
    const mark = await group.mark('before-batch-job');
    say(`3. restore point "before-batch-job" at seq ${mark.seq}, ${formatTime(mark.timestamp)}`);
    say('4. taking a base journal of both volumes while 200 more writes go on');
    const base = await group.beginBase();
    const baseRecords: JournalRecord[] = [];
    const reader = (async () => {
      for await (const r of base.read()) baseRecords.push(r);
    })();
    await Promise.all([reader, writes(200)]);
    const complete = await base.complete();
    say(`   base ${base.baseId}: ${base.records} chunks, ${formatSize(base.bytes)}, complete at seq ${complete.seq}`);
    say('5. 100 more writes, then a flush');
    await writes(100);
    await group.flush();

    say('6. checking');
    const pvols = await Promise.all(group.volumes.map((v) => v.read(0, v.size)));
    check('PVOLs hold what was written', pvols.every((p, i) => p.equals(model[i] as Buffer)), `${group.volumes.length} volumes, ${formatSize(sizes[0]! + sizes[1]!)}`);
    const all: JournalRecord[] = [];
    for await (const r of group.records()) all.push({ header: r.header, data: Buffer.from(r.data) });
    const seqs = all.map((r) => r.header.seq);
    const gapless = seqs.every((s, i) => s === BigInt(i + 1));
    const stamps = all.every((r, i) => i === 0 || r.header.timestamp > (all[i - 1] as JournalRecord).header.timestamp);
    check('sequence is gapless', gapless, `records 1..${seqs[seqs.length - 1]}`);
    check('timestamps increase with sequence', stamps, `${formatTime(all[0]!.header.timestamp)} .. ${formatTime(all[all.length - 1]!.header.timestamp)}`);
    const replay = sizes.map((s) => Buffer.alloc(s));
    for (const r of all) applyToImages(replay, r.header, r.data);
    check('journal replay equals the volumes', replay.every((p, i) => p.equals(model[i] as Buffer)), `${all.length} records applied to empty volumes`);
    const atMark = sizes.map((s) => Buffer.alloc(s));
    for (const r of all) if (r.header.seq <= mark.seq) applyToImages(atMark, r.header, r.data);
    check('replay up to the restore point equals the volumes as they were then', atMark.every((p, i) => p.equals(markAt[i] as Buffer)), `records 1..${mark.seq}`);
    const fromBase = [...baseRecords, ...all.filter((r) => r.header.seq > base.baseId)].sort((a, b) => compareReplayOrder(a.header, b.header));
    const rebuilt = sizes.map((s) => Buffer.alloc(s, 0xee));
    for (const r of fromBase) applyToImages(rebuilt, r.header, r.data);
    check('base taken under writes plus later updates equals the volumes', rebuilt.every((p, i) => p.equals(model[i] as Buffer)), `${baseRecords.length} base chunks + ${fromBase.length - baseRecords.length} updates`);
    const markers = all.filter((r) => r.header.type === RecordType.Marker).map((r) => decodeMarker(r.data).kind);
    check('markers journaled in order', markers.join(',') === 'restore-point,base-started,base-complete', markers.join(', '));

    const out = await group.purge(mark.seq);
    const st = await group.status();
    say(`7. purged up to the restore point: journal-out is now seq ${out}; ${st.journal.records} records (${formatSize(st.journal.bytes)}) held, usage ${st.journal.usagePercent.data}% of data`);
  } finally {
    await group.close();
  }
  const ok = checks.every((c) => c.ok);
  say(ok ? `all ${checks.length} checks passed; files are in ${dir}` : `${checks.filter((c) => !c.ok).length} checks FAILED; files are in ${dir}`);
  return { dir, checks, ok };
}
