import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decompress } from 'zstd-napi';
import { scanFrame } from '../../src/core/zstd-frames.js';
import { readKeyFile, KeyRing } from '../../src/tape/crypto.js';
import { decodeEntries } from '../../src/tape/tar-entry.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { importTapes } from '../../src/replica/import.js';
import { Replica } from '../../src/replica/replica.js';
import { tempDir } from '../helpers.js';
import { exportTo, groupWithData, journalRecords, tapeRecords, tapesDir } from './helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

/** The frames of a tape: [offset, length]. */
function frames(buf: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let off = 0; off < buf.length;) {
    const s = scanFrame(buf, off);
    if (s.kind !== 'frame') throw new Error('not a frame');
    out.push([off, s.length]);
    off += s.length;
  }
  return out;
}

async function segmentRecordCounts(path: string): Promise<Array<{ end: number; records: number; lastSeq: bigint }>> {
  const buf = readFileSync(path);
  const out = [];
  for (const [off, len] of frames(buf)) {
    const entries = await decodeEntries(decompress(buf.subarray(off, off + len)), path);
    const e = entries[0]!;
    if (!e.name.endsWith('.jrs')) continue;
    out.push({ end: off + len, records: e.content.readUInt32LE(12), lastSeq: e.content.readBigUInt64LE(24) });
  }
  return out;
}

/** A tape of 120 records in 16 KiB segments, with where each segment's frame ends. */
async function smallTape(dir: string): Promise<{ file: string; good: Buffer; segs: Array<{ end: number; records: number; lastSeq: bigint }> }> {
  const { group } = await groupWithData(dir, 120);
  await exportTo(group, tapesDir(dir), { segmentBytes: 16 * 1024 });
  await group.close();
  const file = join(tapesDir(dir), readdirSync(tapesDir(dir))[0]!);
  return { file, good: readFileSync(file), segs: await segmentRecordCounts(file) };
}

describe('damaged media', () => {
  const dir = tempDir();

  it('any flipped bit that changes what the tape holds is found, and import keeps exactly the segments before it (property)', async () => {
    const { good, segs } = await smallTape(dir);
    expect(segs.length).toBeGreaterThan(3);
    let run = 0;
    await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: good.length * 8 - 1 }), async (bit) => {
      const bad = Buffer.from(good);
      bad[bit >> 3] = (bad[bit >> 3] as number) ^ (1 << (bit & 7));
      const path = join(dir, `flip-${run}.tar.zst`);
      writeFileSync(path, bad);
      const [v] = await verifyTapes([path]);
      if (v?.ok) {
        // A few bits of a zstd bitstream are redundant (the padding of its last byte, say): flipped, the frame
        // decompresses to the very same bytes and its checksum holds. Harmless, and only that may pass.
        expect(spawnSync('zstd', ['-dcq', path], { maxBuffer: 1 << 26 }).stdout.equals(spawnSync('zstd', ['-dcq', '-'], { input: good, maxBuffer: 1 << 26 }).stdout), `bit ${bit}: verify passed a tape whose content changed`).toBe(true);
        run++;
        return;
      }
      const expectKept = segs.filter((s) => s.end <= bit >> 3);
      const rep = await importTapes(join(dir, `rep-${run++}`), [path]);
      const t = rep.tapes[0]!;
      const kept = expectKept.reduce((n, s) => n + s.records, 0);
      if (t.outcome === 'refused') {
        expect(kept, `bit ${bit}: refused but ${kept} records were before it`).toBe(0);
      } else {
        expect(t.outcome).toBe('partial');
        expect(t.records, `bit ${bit}`).toBe(kept);
        expect(t.updates?.lastSeq ?? null).toBe(expectKept.length ? expectKept[expectKept.length - 1]!.lastSeq : null);
      }
    }), { numRuns: 60 });
  });

  it('a frame header damaged after good segments: the segments before it are kept, whole tapes read in one piece too', async () => {
    const { good, segs } = await smallTape(dir);
    // The magic of the third segment's frame: the reader has cut the frames before it when it meets it.
    const at = segs[1]!.end;
    const bad = Buffer.from(good);
    bad[at] = (bad[at] as number) ^ 0xff;
    const path = join(dir, 'bad-magic.tar.zst');
    writeFileSync(path, bad);
    const rep = await importTapes(join(dir, 'rep-magic'), [path]);
    const t = rep.tapes[0]!;
    expect(t.outcome).toBe('partial');
    expect(t.message).toMatch(new RegExp(`no zstd frame at byte ${at}`));
    expect(t.records).toBe(segs[0]!.records + segs[1]!.records);
    expect(t.updates?.lastSeq).toBe(segs[1]!.lastSeq);
  });

  it('truncation at many offsets: TAPE_TRUNCATED (or damaged), the segments before the cut kept, what was lost named', async () => {
    const { file, good, segs } = await smallTape(dir);
    const total = segs.reduce((n, s) => n + s.records, 0);
    for (let i = 0; i < 25; i++) {
      const cut = Math.floor((good.length - 1) * (i / 25));
      const path = join(dir, `cut-${i}.tar.zst`);
      writeFileSync(path, good.subarray(0, cut));
      const [v] = await verifyTapes([path]);
      expect(v?.ok).toBe(false);
      expect(['TAPE_TRUNCATED', 'TAPE_BAD_LABEL']).toContain(v?.error?.code);
      const kept = segs.filter((s) => s.end <= cut).reduce((n, s) => n + s.records, 0);
      const rep = await importTapes(join(dir, `rep-${i}`), [path]);
      const t = rep.tapes[0]!;
      expect(t.records).toBe(t.outcome === 'refused' ? 0 : kept);
      if (t.outcome === 'partial') {
        expect(t.message).toMatch(/verified/);
        expect(rep.ok).toBe(false);
      }
    }
    // The whole tape then replaces the partial copy.
    const last = join(dir, 'cut-20.tar.zst');
    const rep = await importTapes(join(dir, 'rep-20'), [last]);
    expect(rep.tapes[0]?.outcome).toBe('duplicate');
    const full = await importTapes(join(dir, 'rep-20'), [file]);
    expect(full.tapes[0]?.outcome).toBe('replaced');
    expect(full.tapes[0]?.records).toBe(total);
  });

  it('a byte changed inside an encrypted segment, with every hash fixed up, fails authentication', async () => {
    writeFileSync(join(dir, 'k'), Buffer.alloc(32, 9));
    const key = await readKeyFile(join(dir, 'k'));
    const { group } = await groupWithData(dir, 40);
    await exportTo(group, tapesDir(dir), { key });
    await group.close();
    const file = join(tapesDir(dir), readdirSync(tapesDir(dir))[0]!);
    const buf = readFileSync(file);
    const fr = frames(buf);
    const [off, len] = fr[1]!;
    const entries = await decodeEntries(decompress(buf.subarray(off, off + len)), 'x');
    const seg = Buffer.from(entries[0]!.content);
    seg[100] = (seg[100] as number) ^ 1; // inside the ciphertext
    const pool = new FramePool({ threads: 1 });
    const { buf: forged, hash } = await pool.frame(entries[0]!.name, [seg], { mtime: new Date(), hashed: true });
    // Fix the trailer's hash too, so that only the encryption can tell.
    const [toff, tlen] = fr[fr.length - 1]!;
    const tent = await decodeEntries(decompress(buf.subarray(toff, toff + tlen)), 'x');
    const trailer = JSON.parse(tent[0]!.content.toString());
    trailer.segments[0].xxh128 = hash;
    const tframe = (await pool.frame('jship-trailer.json', [Buffer.from(JSON.stringify(trailer))], { mtime: new Date(), eof: true })).buf;
    await pool.close();
    const out = Buffer.concat([buf.subarray(0, off), forged, buf.subarray(off + len, toff), tframe]);
    writeFileSync(join(dir, 'forged.tar.zst'), out);
    const [v] = await verifyTapes([join(dir, 'forged.tar.zst')], { keys: new KeyRing([key]) });
    expect(v?.error?.code).toBe('TAPE_AUTH_FAILED');
    const [structure] = await verifyTapes([join(dir, 'forged.tar.zst')]);
    expect(structure?.ok).toBe(true); // without the key only hashes are checked, and they were forged consistently
  });

  it('verify checks the chain between tapes given together', async () => {
    const { group } = await groupWithData(dir, 200);
    await exportTo(group, join(dir, 'a'), { mediaSize: 48 * 1024 });
    await group.close();
    const files = readdirSync(join(dir, 'a')).filter((n) => n.endsWith('.tar.zst')).sort().map((n) => join(dir, 'a', n));
    expect(files.length).toBeGreaterThan(2);
    expect((await verifyTapes(files)).every((v) => v.ok)).toBe(true);
    const gapped = await verifyTapes([files[0]!, files[2]!]);
    expect(gapped[1]?.ok).toBe(false);
    expect(gapped[1]?.chain[0]).toMatch(/tapes 2\.\.2 of the chain are missing/);
    copyFileSync(files[0]!, join(dir, 'dup.tar.zst'));
    const dup = await verifyTapes([files[0]!, join(dir, 'dup.tar.zst')]);
    expect(dup.some((v) => v.chain.some((c) => /appears twice/.test(c)))).toBe(true);
  });
});

describe('crash safety', () => {
  const dir = tempDir();
  const bin = new URL('../../bin/jship', import.meta.url).pathname;

  /** Kills the command with SIGKILL once `ready()` holds (polled), and says whether the kill interrupted it (it was still running). */
  const killDuring = async (args: string[], ready: () => boolean): Promise<boolean> => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: 'ignore' });
    let done = false;
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => { done = true; r(signal); }));
    while (!done && !ready()) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    return (await exited) === 'SIGKILL';
  };

  it('SIGKILL during export: no half tape under a final name, nothing purged that no tape holds; a rerun exports it all', async () => {
    for (let trial = 0; trial < 4; trial++) {
      const d = join(dir, String(trial));
      const { g, group } = await groupWithData(d, 2500, { journalSize: 64 * 1024 * 1024 });
      const all = await journalRecords(group);
      await group.close();
      // Killed once it has begun 1, 3, 5, 7 tapes (a hidden partial or a committed one each): at a tape's start, middle or commit.
      const begun = (): number => (existsSync(join(d, 'tapes')) ? readdirSync(join(d, 'tapes')).filter((n) => n.endsWith('.tar.zst') || n.startsWith('.')).length : 0);
      expect(await killDuring(['export', g, '--to', join(d, 'tapes/'), '--media-size', '256K'], () => begun() >= 1 + trial * 2), 'the export was still running when killed').toBe(true);
      const reopened = await openSiteGroup(g);
      try {
        const names = existsSync(join(d, 'tapes')) ? readdirSync(join(d, 'tapes')) : [];
        const finals = names.filter((n) => !n.startsWith('.') && n.endsWith('.tar.zst'));
        const vs = await verifyTapes(finals.map((n) => join(d, 'tapes', n)));
        expect(vs.every((v) => v.ok)).toBe(true);
        const onTape = vs.reduce((m, v) => (v.lastSeq !== null && v.lastSeq > m ? v.lastSeq : m), 0n);
        expect(reopened.journal.outSeq).toBeLessThanOrEqual(onTape + 1n);
        const r = await exportTo(reopened, join(d, 'tapes'), { mediaSize: 256 * 1024 });
        // The kill left work undone: the rerun wrote tapes.
        expect(r.tapes.length).toBeGreaterThan(0);
        const got = [];
        for (const n of readdirSync(join(d, 'tapes')).filter((x) => !x.startsWith('.') && x.endsWith('.tar.zst')).sort()) got.push(...(await tapeRecords(join(d, 'tapes', n))).updates);
        expect(got).toEqual(all);
      } finally {
        await reopened.close();
      }
    }
  });

  it('an import killed while it created the replica (tapes/ made, replica.json not yet renamed into place): the rerun creates it; other files still refuse', async () => {
    const { group } = await groupWithData(dir, 50);
    await exportTo(group, tapesDir(dir));
    await group.close();
    const rep = join(dir, 'rep');
    mkdirSync(join(rep, 'tapes'), { recursive: true });
    writeFileSync(join(rep, '.replica.json.0123456789ab.tmp'), '{"format":1,');
    const r = await importTapes(rep, [tapesDir(dir)]);
    expect(r.ok).toBe(true);
    expect(readdirSync(rep).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const other = join(dir, 'other');
    mkdirSync(join(other, 'tapes'), { recursive: true });
    writeFileSync(join(other, 'notes.txt'), 'mine');
    await expect(importTapes(other, [tapesDir(dir)])).rejects.toMatchObject({ code: 'REPLICA_NOT_EMPTY' });
    expect(readdirSync(other).sort()).toEqual(['notes.txt', 'tapes']);
  });

  it('SIGKILL during import: the catalogue stays consistent and a rerun completes it', async () => {
    const { group } = await groupWithData(dir, 2500, { journalSize: 64 * 1024 * 1024 });
    const all = await journalRecords(group);
    await exportTo(group, tapesDir(dir), { mediaSize: 128 * 1024 });
    await group.close();
    for (let trial = 0; trial < 4; trial++) {
      // Killed once it has stored or staged two more tapes than before this trial: the import was mid-way.
      const held = (): number => (existsSync(join(dir, 'rep', 'tapes')) ? readdirSync(join(dir, 'rep', 'tapes')).length : 0);
      const before = held();
      expect(await killDuring(['import', join(dir, 'rep'), tapesDir(dir)], () => held() >= before + 2), 'the import was still running when killed').toBe(true);
      if (!existsSync(join(dir, 'rep', 'replica.json'))) continue;
      const replica = await Replica.open(join(dir, 'rep'));
      try {
        for (const t of replica.catalog.tapes()) {
          const [v] = await verifyTapes([replica.tapePath(t.file)]);
          expect(v?.ok).toBe(true);
          expect(v?.sha256).toBe(t.sha256);
        }
      } finally {
        await replica.close();
      }
    }
    const rep = await importTapes(join(dir, 'rep'), [tapesDir(dir)]);
    expect(rep.ok).toBe(true);
    expect(rep.gaps).toEqual([]);
    expect(rep.contiguousThrough).toBe(all[all.length - 1]!.seq);
    expect(readdirSync(join(dir, 'rep', 'tapes')).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
