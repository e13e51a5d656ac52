import { promises as fsp, existsSync, mkdirSync, readFileSync, rmSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';

import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { rebuildCatalog } from '../../src/replica/rebuild.js';
import { expireReplica } from '../../src/replica/expire.js';
import { Replica } from '../../src/replica/replica.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { PointMount } from '../../src/replica/mount.js';
import type { PointSpec } from '../../src/replica/restore-plan.js';
import { jshipJson, tempDir } from '../helpers.js';
import { exportTo, groupWithData, writeMixed } from '../tape/helpers.js';

const jship = jshipJson;

/** Runs `f` on a replica's catalogue opened with SQLite directly (as a damaged disk, or a hand, would change it). */
function onCatalog<T>(rep: string, f: (db: Database.Database) => T): T {
  const db = new Database(join(rep, 'catalog.db'));
  try {
    return f(db);
  } finally {
    db.close();
  }
}

describe('replica catalogue and retention', () => {
  const dir = tempDir();

  /** A group of `records` mixed records, exported (no base: the volumes start as zeros) into `tapes` and imported into `rep`. */
  async function importedGroup(records: number, tapes: string, rep: string): Promise<{ g: string; rep: string }> {
    const { g, group } = await groupWithData(dir, records);
    await exportTo(group, join(dir, tapes));
    await group.close();
    await importTapes(join(dir, rep), [join(dir, tapes)]);
    return { g, rep: join(dir, rep) };
  }

  it('rebuilds the catalogue from the stored tapes alone', async () => {
    const { group } = await groupWithData(dir, 100);
    await group.mark('m1');
    await exportTo(group, join(dir, 't'), { mediaSize: 64 * 1024 });
    await group.close();
    await importTapes(join(dir, 'rep'), [join(dir, 't')]);
    const snapshot = async (): Promise<unknown> => {
      const r = await Replica.open(join(dir, 'rep'));
      try {
        return { tapes: r.catalog.tapes().map((t) => ({ ...t, importedAt: '' })), segments: r.catalog.segments(), markers: r.catalog.markers() };
      } finally {
        await r.close();
      }
    };
    const before = await snapshot();
    rmSync(join(dir, 'rep', 'catalog.db'));
    writeFileSync(join(dir, 'rep', 'catalog.db'), 'garbage, not sqlite');
    await expect(Replica.open(join(dir, 'rep'))).rejects.toThrowError(expect.objectContaining({ code: 'REPLICA_BAD' }));
    const report = await rebuildCatalog(join(dir, 'rep'));
    expect(report.tapes.every((t) => t.status === 'complete')).toBe(true);
    expect(await snapshot()).toEqual(before);
  });

  it('a rebuild puts its catalogue in place whole: read meanwhile, or killed, the replica keeps the one before', async () => {
    const { group } = await groupWithData(dir, 30);
    await exportTo(group, join(dir, 'rb'), { base: true });
    for (const fill of [2, 3]) {
      await writeMixed(group, 30, fill);
      await exportTo(group, join(dir, 'rb'));
    }
    await group.close();
    const rep = join(dir, 'rb-rep');
    await importTapes(rep, [join(dir, 'rb')]);
    const listed = async (): Promise<number[]> => {
      const v = await Replica.view(rep);
      try {
        return v.catalog.tapes().map((t) => t.serial);
      } finally {
        await v.close();
      }
    };
    const all = await listed();
    expect(all.length).toBeGreaterThan(2);
    // Monitoring reads the replica while the rebuild is at its second tape; then the rebuild dies there.
    const stat = fsp.stat.bind(fsp);
    let tapesSeen = 0;
    let during: number[] | Error = [];
    const died = vi.spyOn(fsp, 'stat').mockImplementation(async (path, opts) => {
      if (String(path).startsWith(join(rep, 'tapes', '')) && String(path).endsWith('.tar.zst') && ++tapesSeen === 2) {
        during = await listed().catch((e: Error) => e);
        throw new Error('killed');
      }
      return stat(path, opts as never);
    });
    try {
      await expect(rebuildCatalog(rep)).rejects.toThrow('killed');
    } finally {
      died.mockRestore();
    }
    expect(during).toEqual(all);
    expect(await listed()).toEqual(all);
    // The next rebuild starts over and puts a whole catalogue in place.
    const report = await rebuildCatalog(rep);
    expect(report.tapes.map((t) => t.serial)).toEqual(all);
    expect(await listed()).toEqual(all);
    expect(readdirSync(rep).filter((n) => n.startsWith('catalog.db.'))).toEqual([]);
  });

  it('a record index damaged in the catalogue fails a restore (REPLICA_BAD) and nothing is put in place; it restored bytes to the wrong place, exit 0, before', async () => {
    const { g, rep } = await importedGroup(60, 'ti', 'repi');
    // One record moved by 512 bytes in the catalogue only (bit rot in catalog.db, whose pages SQLite does not check).
    onCatalog(rep, (db) => {
      const row = db.prepare('SELECT serial, idx, record_index FROM segments ORDER BY serial, idx LIMIT 1').get() as { serial: number; idx: number; record_index: Buffer };
      const damaged = Buffer.from(row.record_index);
      damaged.writeBigUInt64LE(damaged.readBigUInt64LE(16) ^ 512n, 16);
      db.prepare('UPDATE segments SET record_index = ? WHERE serial = ? AND idx = ?').run(damaged, row.serial, row.idx);
    });
    const out = join(dir, 'out-i');
    await expect(restoreReplica(rep, { point: { kind: 'latest' }, targets: [{ path: `${out}/` }] })).rejects.toThrowError(expect.objectContaining({
      code: 'REPLICA_BAD', message: expect.stringMatching(/record index of tape \d+ segment 0 is damaged/), hint: expect.stringMatching(/catalog --rebuild/),
    }));
    expect(existsSync(out)).toBe(false);
    // Rebuilt from the tapes, the catalogue restores the volumes exactly.
    await rebuildCatalog(rep);
    await restoreReplica(rep, { point: { kind: 'latest' }, targets: [{ path: `${out}/` }] });
    for (const v of ['a', 'b']) expect(readFileSync(join(out, `${v}.img`)).equals(readFileSync(join(g, '..', `${v}.img`)))).toBe(true);
    // A catalogue written before indexes carried their CRC is still read (a rebuild adds them).
    onCatalog(rep, (db) => db.prepare('UPDATE segments SET record_index = substr(record_index, 1, length(record_index) - 4)').run());
    const again = join(dir, 'out-old');
    await restoreReplica(rep, { point: { kind: 'latest' }, targets: [{ path: `${again}/` }] });
    for (const v of ['a', 'b']) expect(readFileSync(join(again, `${v}.img`)).equals(readFileSync(join(g, '..', `${v}.img`)))).toBe(true);
  });

  it('a record the catalogue places past its segment\'s records fails a restore and a mount read (TAPE_DAMAGED), coalesced or not; before, fewer bytes were written or read, the rest left as it was', async () => {
    const { rep } = await importedGroup(60, 'tp', 'repp');
    // The newest update (it wins all of its range) placed past the records, in an index catalogued before
    // indexes carried their CRC (taken as it is): a legacy catalogue, damaged.
    const where = onCatalog(rep, (db) => {
      const rows = db.prepare('SELECT serial, idx, record_index FROM segments').all() as Array<{ serial: number; idx: number; record_index: Buffer }>;
      let best: { serial: number; idx: number; index: Buffer; at: number; seq: bigint } | undefined;
      for (const r of rows) {
        const index = Buffer.from(r.record_index).subarray(0, r.record_index.length - 4);
        for (let at = 0; at < index.length; at += 40) {
          const seq = index.readBigUInt64LE(at);
          if (index[at + 38] === 1 && index.readBigUInt64LE(at + 24) > 0n && (!best || seq > best.seq)) best = { serial: r.serial, idx: r.idx, index, at, seq };
        }
      }
      if (!best) throw new Error('no update record');
      best.index.writeUInt32LE(best.index.readUInt32LE(best.at + 32) + 64 * 1024 * 1024, best.at + 32);
      db.prepare('UPDATE segments SET record_index = ? WHERE serial = ? AND idx = ?').run(Buffer.from(best.index), best.serial, best.idx);
      return `tape ${best.serial} segment ${best.idx}`;
    });
    for (const coalesce of [true, false]) {
      const out = join(dir, `out-p-${coalesce}`);
      await expect(restoreReplica(rep, { point: { kind: 'latest' }, targets: [{ path: `${out}/` }], coalesce })).rejects.toThrowError(expect.objectContaining({
        code: 'TAPE_DAMAGED', message: expect.stringContaining('past the segment\'s'), hint: expect.stringMatching(/catalog --rebuild/),
      }));
      expect(readdirSync(out)).toEqual([]);
    }
    // A mount reads the same bytes: from the tapes, and through its cache of payloads.
    for (const cacheBytes of [0, 64 * 1024 * 1024]) {
      const m = await PointMount.open(rep, { point: { kind: 'latest' }, cacheBytes });
      try {
        const reads = await Promise.allSettled(m.exports.map((x) => x.read(0, x.size)));
        expect(reads.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).toEqual([
          expect.objectContaining({ code: 'TAPE_DAMAGED', message: expect.stringContaining(`${where}: the catalogue puts`) }),
        ]);
      } finally {
        await m.close();
      }
    }
  });

  it('a stored tape damaged after its import fails a restore (TAPE_DAMAGED) naming the segment, and nothing is put in place: cut short, other bytes at a frame\'s offset, a byte flipped inside a frame', async () => {
    const { rep } = await importedGroup(40, 'td', 'repd');
    const seg = onCatalog(rep, (db) => db.prepare('SELECT s.idx AS idx, s.frame_offset AS at, s.frame_length AS length, t.file AS file FROM segments s JOIN tapes t ON t.serial = s.serial ORDER BY s.serial, s.idx LIMIT 1').get() as { idx: number; at: number; length: number; file: string });
    const tape = join(rep, 'tapes', seg.file);
    const good = readFileSync(tape);
    const damages: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
      ['cut short', (b) => b.subarray(0, seg.at + seg.length - 10), new RegExp(`segment ${seg.idx} is cut short \\(${seg.length - 10} of ${seg.length} bytes\\)`)],
      ['other bytes at its offset', (b) => Buffer.concat([b.subarray(0, seg.at), Buffer.alloc(seg.length, 0x41), b.subarray(seg.at + seg.length)]), new RegExp(`segment ${seg.idx} cannot be read: not one whole zstd frame at the catalogued offset`)],
      ['a byte flipped inside', (b) => { const c = Buffer.from(b); const i = seg.at + Math.floor(seg.length / 2); c[i] = (c[i] as number) ^ 0x10; return c; }, new RegExp(`segment ${seg.idx} cannot be read: `)],
    ];
    for (const [what, damage, message] of damages) {
      writeFileSync(tape, damage(good));
      const out = join(dir, `out-d-${what.replace(/\W+/g, '-')}`);
      await expect(restoreReplica(rep, { point: { kind: 'latest' }, targets: [{ path: `${out}/` }] }), what).rejects.toThrowError(expect.objectContaining({
        code: 'TAPE_DAMAGED', message: expect.stringMatching(message), hint: expect.stringMatching(/import a good copy/),
      }));
      // Neither an image nor a temporary file is left.
      expect(existsSync(out) ? readdirSync(out) : [], what).toEqual([]);
    }
  });

  it('a damaged marker or segment row in the catalogue fails a restore (REPLICA_BAD); a marker moved to an earlier seq restored that point, "not proved", exit 0, before', async () => {
    const { group } = await groupWithData(dir, 40);
    await group.mark('m1');
    await writeMixed(group, 40, 7);
    await exportTo(group, join(dir, 'tm'));
    await group.close();
    const rep = join(dir, 'repm');
    await importTapes(rep, [join(dir, 'tm')]);
    const sql = (text: string): unknown => onCatalog(rep, (db) => db.prepare(text).run());
    const restore = (point: PointSpec, name: string): Promise<unknown> => restoreReplica(rep, { point, targets: [{ path: `${join(dir, name)}/` }] });
    const damaged = expect.objectContaining({ code: 'REPLICA_BAD', message: expect.stringMatching(/is damaged/), hint: expect.stringMatching(/catalog --rebuild/) });
    sql("UPDATE markers SET seq = seq - 5 WHERE name = 'm1'");
    await expect(restore({ kind: 'marker', name: 'm1' }, 'o1')).rejects.toThrowError(damaged);
    await rebuildCatalog(rep);
    sql("UPDATE segments SET last_seq = last_seq - 1 WHERE idx = 0 AND kind = 'update'");
    await expect(restore({ kind: 'latest' }, 'o2')).rejects.toThrowError(damaged);
    expect(existsSync(join(dir, 'o1')) || existsSync(join(dir, 'o2'))).toBe(false);
    // A catalogue from before rows carried a CRC (no column): opened, it gets the column, and its rows are read as they are.
    await rebuildCatalog(rep);
    sql('ALTER TABLE markers DROP COLUMN row_crc');
    sql('ALTER TABLE segments DROP COLUMN row_crc');
    const r = await restore({ kind: 'marker', name: 'm1' }, 'o3') as { proof: { equal: boolean } | null };
    expect(r.proof?.equal).toBe(true);
    expect(onCatalog(rep, (db) => (db.prepare('SELECT count(*) AS n FROM segments WHERE row_crc IS NULL').get() as { n: number }).n)).toBeGreaterThan(0);
  });

  it('expire keeps every tape a restore point after the cut needs, and is a dry run without --confirm', async () => {
    const { g, group } = await groupWithData(dir, 50);
    await exportTo(group, join(dir, 't'), { base: true }); // tape 1: base A + updates
    await writeMixed(group, 50, 2);
    const tape2 = await exportTo(group, join(dir, 't')); // tape 2
    // The cut: right after tape 2's last record (the records after it are stamped later: the group's clock only goes forward).
    const cut = tape2.updates!.lastTs + 1n;
    await writeMixed(group, 50, 3);
    await exportTo(group, join(dir, 't'), { base: true }); // tape 3: base B + updates
    await writeMixed(group, 50, 4);
    await exportTo(group, join(dir, 't')); // tape 4
    await group.close();
    void g;
    await importTapes(join(dir, 'rep'), [join(dir, 't')]);
    // Restore points from the cut on need base A (the newest complete by then): nothing can go.
    const sinceCut = await expireReplica(join(dir, 'rep'), { keepSinceTs: cut }, true);
    expect(sinceCut.remove).toEqual([]);
    // Keeping only the last base: tapes 1 and 2 are not needed.
    const dry = jship('expire', join(dir, 'rep'), '--keep-last', '1');
    expect(dry).toExit(0);
    expect(dry.out.remove.map((t: { serial: number }) => t.serial)).toEqual([1, 2]);
    expect(readdirSync(join(dir, 'rep', 'tapes'))).toHaveLength(4);
    const real = jship('expire', join(dir, 'rep'), '--keep-last', '1', '--confirm');
    expect(real.out.removed).toBe(true);
    expect(readdirSync(join(dir, 'rep', 'tapes')).length).toBe(2);
    const tapes = jship('tapes', join(dir, 'rep'));
    expect(tapes.out.tapes.map((t: { serial: number }) => t.serial)).toEqual([3, 4]);
    expect(tapes.out.missingSerials).toEqual([]);
    expect(tapes.out.gaps).toEqual([]);
    expect(jship('expire', join(dir, 'rep'))).toExit(2);
    expect(jship('expire', join(dir, 'rep'), '--keep-since', '2026-01-01T00:00:00')).toExit(2);
  });

  it('an expire killed before it removed its files leaves none behind: the next expire, or a rebuilt catalogue, removes them', async () => {
    const { group } = await groupWithData(dir, 50);
    await exportTo(group, join(dir, 't'), { base: true });
    await writeMixed(group, 50, 2);
    await exportTo(group, join(dir, 't'));
    await writeMixed(group, 50, 3);
    await exportTo(group, join(dir, 't'), { base: true });
    await group.close();
    const rep = join(dir, 'rep');
    await importTapes(rep, [join(dir, 't')]);
    const tapes = (): string[] => readdirSync(join(rep, 'tapes')).sort();
    const all = tapes();
    expect(all).toHaveLength(3);
    // The expire dies at its first file removal (as under kill -9 once the catalogue is updated).
    const rm = fsp.rm.bind(fsp);
    const died = vi.spyOn(fsp, 'rm').mockImplementation(async (path, opts) => {
      if (String(path).includes(join(rep, 'tapes'))) throw new Error('killed');
      return rm(path, opts);
    });
    try {
      await expect(expireReplica(rep, { keepLast: 1 }, true)).rejects.toThrow('killed');
    } finally {
      died.mockRestore();
    }
    expect(tapes()).toEqual(all); // the files are there, their rows gone
    // A rebuilt catalogue does not bring them back...
    await rebuildCatalog(rep);
    expect(jship('tapes', rep).out.tapes.map((t: { serial: number }) => t.serial)).toEqual([3]);
    expect(tapes()).toEqual(all.slice(2));
    // ...and the next expire, after a kill at the same point, removes them.
    await importTapes(join(dir, 'rep2'), [join(dir, 't')]);
    const died2 = vi.spyOn(fsp, 'rm').mockImplementation(async (path, opts) => {
      if (String(path).includes(join(dir, 'rep2', 'tapes'))) throw new Error('killed');
      return rm(path, opts);
    });
    try {
      await expect(expireReplica(join(dir, 'rep2'), { keepLast: 1 }, true)).rejects.toThrow('killed');
    } finally {
      died2.mockRestore();
    }
    expect(readdirSync(join(dir, 'rep2', 'tapes'))).toHaveLength(3);
    expect((await expireReplica(join(dir, 'rep2'), { keepLast: 1 }, true)).remove).toEqual([]);
    expect(readdirSync(join(dir, 'rep2', 'tapes')).sort()).toEqual(all.slice(2));
  });

  it('a directory or a FIFO named like a tape in a directory of tapes is passed over: it stopped an import with EISDIR, or held it forever', async () => {
    const { group } = await groupWithData(dir, 30);
    await exportTo(group, join(dir, 't'));
    await group.close();
    const [tape] = readdirSync(join(dir, 't')).filter((n) => n.endsWith('.tar.zst'));
    const carried = join(dir, 'carried');
    mkdirSync(carried);
    symlinkSync(join(dir, 't', tape!), join(carried, tape!)); // a link to a tape is a tape
    mkdirSync(join(carried, 'jship-000002-0000000000000100.tar.zst'));
    execFileSync('mkfifo', [join(carried, 'jship-000003-0000000000000200.tar.zst')]);
    for (const verb of [['import', join(dir, 'rep')], ['verify'], ['tapes']]) {
      const r = jship(...verb, carried);
      expect(r.code, verb[0]).toBe(0);
      expect(r.out.tapes.length, verb[0]).toBe(1);
    }
    // Named on its own, a directory is a directory of tapes (here, none).
    expect(jship('verify', join(carried, 'jship-000002-0000000000000100.tar.zst'))).toExit(2);
  });

  it('CLI: export, verify, import, tapes with their exit codes', async () => {
    const { g, group } = await groupWithData(dir, 30);
    await group.close();
    const ex = jship('export', g, '--to', join(dir, 't/'));
    expect(ex).toExit(0);
    expect(ex.out.tapes).toHaveLength(1);
    expect(ex.out.compressionRatio).toBeGreaterThan(0.9);
    const none = jship('export', g, '--to', join(dir, 't/'));
    expect(none).toExit(0);
    expect(none.out.nothingToExport).toBe(true);
    const empty = jship('export', g, '--to', join(dir, 't/'), '--allow-empty');
    expect(empty).toExit(0);
    expect(empty.out.tapes).toHaveLength(1);
    expect(jship('verify', join(dir, 't'))).toExit(0);
    const file = ex.out.tapes[0].location as string;
    expect(jship('export', g, '--to', file)).toExit(1); // exists: never overwritten
    expect(jship('export', g)).toExit(2);
    expect(jship('export', g, '--to', join(dir, 'one.tar.zst'), '--media-size', '1M')).toExit(2);
    expect(jship('export', g, '--to', join(dir, 't/'), '--media-size', '1Q')).toExit(2);
    const imp = jship('import', join(dir, 'rep'), join(dir, 't'));
    expect(imp).toExit(0);
    expect(imp.out.tapes.map((t: { outcome: string }) => t.outcome)).toEqual(['imported', 'imported']);
    writeFileSync(join(dir, 'junk.tar.zst'), 'not a tape at all');
    const junk = jship('import', join(dir, 'rep'), join(dir, 'junk.tar.zst'));
    expect(junk).toExit(1);
    expect(junk.out.tapes[0].outcome).toBe('refused');
    const v = jship('verify', join(dir, 'junk.tar.zst'));
    expect(v).toExit(1);
    expect(jship('import', join(dir, 'rep'), join(dir, 'nope'))).toExit(2);
    expect(jship('tapes', join(dir, 't'))).toExit(0);
  });
});
