import { makeDirs } from '../io/files.js';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { formatSize } from '../core/sizes.js';
import { formatTime } from '../core/time.js';
import { createGroup } from '../journal/group-create.js';
import type { JournalGroup } from '../journal/journal-group.js';
import { openSiteGroup } from '../owner/consumers.js';
import { DirDestination } from '../tape/destination.js';
import { exportGroup } from '../tape/export.js';
import { verifyTapes } from '../tape/verify.js';
import { importTapes } from '../replica/import.js';
import { restoreReplica } from '../replica/restore.js';
import type { PointSpec } from '../replica/restore-plan.js';
import { parseHostPort } from '../io/sockets.js';
import { LinkPrimary } from '../link/link-primary.js';
import { runPull } from '../link/link-secondary.js';
import { readLinkKey } from '../link/link-tls.js';

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
const NAMES = ['db', 'logs'];
const SIZES = [8 * MiB, 4 * MiB];

/**
 * The whole flow on local files, narrated through `say`: a primary group of
 * two volumes (one a volume group of two files) written at several moments
 * with a restore point between them; a base exported as a media set while
 * writes go on, then the updates; everything imported into a replica in
 * another directory; restores to a timestamp, to the restore point and to
 * the latest point, each checked byte for byte against what was written;
 * and a second replica fed over the direct link.
 */
export async function runDemo(dir: string, say: (line: string) => void): Promise<DemoResult> {
  const checks: DemoCheck[] = [];
  const check = (name: string, ok: boolean, detail: string): void => {
    checks.push({ name, ok, detail });
    say(`   ${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };
  const primary = join(dir, 'primary');
  const groupDir = join(primary, 'group');
  const tapes = join(dir, 'carried-tapes');
  const replica = join(dir, 'secondary', 'replica');
  await makeDirs(primary);
  say(`1. primary site: journal group ${groupDir}, volume "db" (8 MiB) and volume group "logs" (two 2 MiB files), 16 MiB journal`);
  await createGroup(groupDir, {
    volumes: [
      { name: 'db', extents: [{ path: join(primary, 'db.img'), size: SIZES[0] as number }] },
      { name: 'logs', extents: [{ path: join(primary, 'logs-1.img'), size: 2 * MiB }, { path: join(primary, 'logs-2.img'), size: 2 * MiB }] },
    ],
    journalSize: 16 * MiB,
    chunkSize: 256 * 1024,
  });
  const group = await openSiteGroup(groupDir);
  const model = SIZES.map((s) => Buffer.alloc(s));
  const snapshot = (): Buffer[] => model.map((m) => Buffer.from(m));
  let last = 0n;
  const writes = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      const v = i % 2;
      const size = SIZES[v] as number;
      const len = 4096 * (1 + Math.floor(Math.random() * 16));
      const off = Math.floor(Math.random() * ((size - len) / 4096)) * 4096;
      const roll = Math.random();
      let r;
      if (roll < 0.85) {
        const data = randomBytes(len);
        r = await group.write(v, off, data);
        data.copy(model[v] as Buffer, off);
      } else {
        r = roll < 0.93 ? await group.writeZeroes(v, off, len) : await group.trim(v, off, len);
        model[v]?.fill(0, off, off + len);
      }
      last = r.timestamp;
    }
  };
  const linkedReplica = join(dir, 'secondary', 'linked-replica');
  let linked: { tapes: number; records: number } | undefined;
  let atTime: { ts: bigint; images: Buffer[] };
  let atExport: Buffer[];
  let atMark: Buffer[];
  try {
    say('2. writing 200 blocks (writes, zeroes, trims) through the library API');
    await writes(200);
    say(`3. exporting a base as a media set of 3 MiB tapes to ${tapes}, while 150 more writes go on`);
    const [base] = await Promise.all([
      exportGroup(group, { destination: new DirDestination(tapes), base: true, mediaSize: 3 * MiB }),
      writes(150),
    ]);
    say(`   base ${base.base?.baseId} complete at seq ${base.base?.completeSeq}: ${base.tapes.length} tapes, ${formatSize(base.tapeBytes)}`);
    await writes(100);
    atTime = { ts: last, images: snapshot() };
    say(`4. the time to restore to later: ${formatTime(atTime.ts)}`);
    await writes(50);
    const mark = await group.mark('before-batch-job');
    atMark = snapshot();
    say(`5. restore point "before-batch-job" at seq ${mark.seq}, then 200 more writes`);
    await writes(200);
    const upd = await exportGroup(group, { destination: new DirDestination(tapes), mediaSize: 3 * MiB });
    say(`6. exported the updates: seq ${upd.updates?.firstSeq}..${upd.updates?.lastSeq} in ${upd.tapes.length} tapes; journal purged to seq ${upd.journalOut}`);
    atExport = snapshot();
    linked = await overTheLink(group, groupDir, linkedReplica, writes, say);
  } finally {
    await group.close();
  }
  const latest = snapshot();
  const pvols = await Promise.all([fsp.readFile(join(primary, 'db.img')), Promise.all([fsp.readFile(join(primary, 'logs-1.img')), fsp.readFile(join(primary, 'logs-2.img'))]).then((p) => Buffer.concat(p))]);
  check('PVOLs hold what was written', pvols.every((p, i) => p.equals(model[i] as Buffer)), `${formatSize(SIZES[0]! + SIZES[1]!)}`);

  const files = (await fsp.readdir(tapes)).filter((n) => n.endsWith('.tar.zst')).sort();
  const verified = await verifyTapes(files.map((n) => join(tapes, n)));
  check('every tape verifies on its own, and the chain holds', verified.every((v) => v.ok), `${files.length} tapes`);

  say(`8. secondary site: importing the tapes into ${replica}, in reverse order (as carried media may come)`);
  const imp = await importTapes(replica, [...files].reverse().map((n) => join(tapes, n)));
  check('import takes every tape, with no gap', imp.ok && imp.gaps.length === 0 && imp.tapes.every((t) => t.outcome === 'imported'), `${imp.tapes.length} imported, seq ${imp.coverage.map((c) => `${c.from}..${c.to}`).join(', ')}`);

  const restore = async (what: string, point: PointSpec, expected: Buffer[], into: string): Promise<void> => {
    const out = join(dir, 'secondary', into);
    const r = await restoreReplica(replica, { point, targets: [{ path: `${out}/` }] });
    const got = await Promise.all(NAMES.map((n) => fsp.readFile(join(out, `${n}.img`))));
    check(`restore ${what} equals the volumes as they were`, got.every((g, i) => g.equals(expected[i] as Buffer)), `${r.plan.point}: ${r.plan.records} records, ${r.segmentsRead} of ${r.plan.segments} segments read, into ${out}`);
  };
  say('9. restoring to the timestamp, to the restore point and to the latest point, each into new files');
  await restore(`--until ${formatTime(atTime.ts)}`, { kind: 'until', ts: atTime.ts, exclusive: false }, atTime.images, 'at-time');
  await restore('--marker before-batch-job', { kind: 'marker', name: 'before-batch-job' }, atMark, 'at-marker');
  await restore('to the latest point', { kind: 'latest' }, atExport, 'latest');
  const sv = await restoreReplica(replica, { point: { kind: 'latest' } });
  const svols = await Promise.all(NAMES.map((n) => fsp.readFile(join(replica, 'svol', `${n}.img`))));
  check('the standing secondary copies (SVOLs) equal the latest point', svols.every((g, i) => g.equals(atExport[i] as Buffer)), `seq ${sv.plan.seq}`);

  const out = join(dir, 'secondary', 'linked-latest');
  await restoreReplica(linkedReplica, { point: { kind: 'latest' }, targets: [{ path: `${out}/` }] });
  const viaLink = await Promise.all(NAMES.map((n) => fsp.readFile(join(out, `${n}.img`))));
  check('the replica fed over the direct link restores to the latest point', viaLink.every((g, i) => g.equals(latest[i] as Buffer)), `${linked?.tapes} link tapes, ${linked?.records} records, into ${out}`);

  const ok = checks.every((c) => c.ok);
  say(ok ? `all ${checks.length} checks passed; the files are in ${dir}` : `${checks.filter((c) => !c.ok).length} checks FAILED; the files are in ${dir}`);
  return { dir, checks, ok };
}

/**
 * Step 7: a second secondary fed over the direct link on loopback (TLS with
 * the group's pre-shared key): it gets a base, then the updates, pulling
 * twice while 50 more writes go on.
 */
async function overTheLink(group: JournalGroup, groupDir: string, replica: string, writes: (n: number) => Promise<void>, say: (line: string) => void): Promise<{ tapes: number; records: number }> {
  const key = await readLinkKey(join(groupDir, 'link.key'));
  const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: () => undefined });
  try {
    say(`7. direct link: ${replica} pulls from ${primary.address} (TLS, pre-shared key): a base, then updates, while 50 more writes go on`);
    const from = parseHostPort(primary.address as string, '--from');
    const pull = (): ReturnType<typeof runPull> => runPull({ replicaDir: replica, name: 'demo-secondary', key, log: () => undefined, from, once: true });
    const first = await pull();
    await writes(50);
    const second = await pull();
    return { tapes: first.tapes + second.tapes, records: first.records + second.records };
  } finally {
    await primary.stop();
  }
}
