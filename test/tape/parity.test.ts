import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decompress } from 'zstd-napi';
import { frames } from '../replica/forge.js';
import { decodeEntries } from '../../src/tape/tar-entry.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { importTapes } from '../../src/replica/import.js';
import { decodeParityHeader, parityFrame, rawZstdFrame } from '../../src/tape/parity.js';
import { BIN, jshipJson, tempDir } from '../helpers.js';
import { exportTo, groupWithData, tapesDir } from './helpers.js';

interface Frame {
  offset: number;
  length: number;
  entry: string;
}

/** Every frame of a tape with the name of its first entry. */
async function layout(buf: Buffer): Promise<Frame[]> {
  const out: Frame[] = [];
  for (const [offset, length] of frames(buf)) {
    const entries = await decodeEntries(decompress(buf.subarray(offset, offset + length)), 'test');
    out.push({ offset, length, entry: entries[0]?.name ?? '(none)' });
  }
  return out;
}

/** The groups of a tape with parity: each its data frames and its parity frame. */
function groups(frames: Frame[]): Array<{ data: Frame[]; parity: Frame }> {
  const out: Array<{ data: Frame[]; parity: Frame }> = [];
  let data: Frame[] = [];
  for (const f of frames) {
    if (f.entry.startsWith('parity/')) {
      out.push({ data, parity: f });
      data = [];
    } else if (f.entry !== 'jship-trailer.json') {
      data.push(f);
    }
  }
  return out;
}

type Harm = 'flip' | 'zero' | 'cut';

/** The tape with each frame named harmed: a bit flipped in it, zeroed, or cut out (the bytes after it move up). */
function harm(good: Buffer, hits: Array<{ frame: Frame; how: Harm; at: number }>): Buffer {
  const bad = Buffer.from(good);
  for (const h of hits) {
    const pos = h.frame.offset + (h.at % h.frame.length);
    if (h.how === 'flip') bad[pos] = (bad[pos] as number) ^ 0x10;
    if (h.how === 'zero') bad.fill(0, h.frame.offset, h.frame.offset + h.frame.length);
  }
  const cuts = hits.filter((h) => h.how === 'cut').map((h) => h.frame).sort((a, b) => b.offset - a.offset);
  let out = bad;
  for (const c of cuts) out = Buffer.concat([out.subarray(0, c.offset), out.subarray(c.offset + c.length)]);
  return out;
}

describe('parity: a tape that survives damaged and missing frames', () => {
  const dir = tempDir();
  let good: Buffer;
  let frames: Frame[];
  let file: string;

  it('export --parity 10 writes a parity frame after each group of at most 20 frames; tar, zstd and verify read the tape', async () => {
    const { group } = await groupWithData(dir, 300);
    const r = await exportTo(group, tapesDir(dir), { segmentBytes: 4 * 1024, parity: 10 });
    await group.close();
    file = r.tapes[0]!.location;
    good = readFileSync(file);
    frames = await layout(good);
    const gs = groups(frames);
    expect(gs.length).toBeGreaterThanOrEqual(3);
    expect(gs[0]!.data[0]!.entry).toBe('jship-label.json');
    for (const [i, g] of gs.entries()) {
      expect(g.parity.entry).toBe(`parity/${String(i + 1).padStart(6, '0')}.json`);
      expect(g.data.length).toBeLessThanOrEqual(20);
      const [json, bin] = await decodeEntries(decompress(good.subarray(g.parity.offset, g.parity.offset + g.parity.length)), 'test');
      const h = decodeParityHeader(json!.content, 'test');
      expect(h.frames.map((f) => [f.entry, f.offset, f.length])).toEqual(g.data.map((f) => [f.entry, f.offset, f.length]));
      expect(h.parity.length).toBe(Math.ceil(g.data.length / 10));
      expect(h.shardBytes).toBe(Math.max(...g.data.map((f) => f.length)));
      expect(bin!.content.length).toBe(h.parity.length * h.shardBytes);
    }
    expect(r.tapes[0]!.trailer.parity?.frames.map((f) => [f.name, f.offset, f.length])).toEqual(gs.map((g) => [g.parity.entry, g.parity.offset, g.parity.length]));
    const tar = spawnSync('tar', ['--zstd', '-tf', file], { encoding: 'utf8' });
    expect(tar).toExit(0);
    expect(tar.stdout.split('\n').filter((n) => n.startsWith('parity/'))).toHaveLength(gs.length * 2);
    expect(spawnSync('zstd', ['-tq', file])).toExit(0);
    const [v] = await verifyTapes([file]);
    expect(v!.ok).toBe(true);
    expect(v!.parity).toEqual({ percent: 10, state: 'intact', rebuilt: [], lost: [] });
  });

  it('a parity frame is a function of its content: made again from its group, it is the same bytes', async () => {
    const g = groups(frames)[1]!;
    const bytes = good.subarray(g.parity.offset, g.parity.offset + g.parity.length);
    const [json, bin] = await decodeEntries(decompress(bytes), 'test');
    const h = decodeParityHeader(json!.content, 'test');
    const shards = h.parity.map((_, j) => bin!.content.subarray(j * h.shardBytes, (j + 1) * h.shardBytes));
    expect(Buffer.compare(await parityFrame(h, shards), bytes)).toBe(0);
    // A stored frame zstd itself reads back.
    expect(decompress(rawZstdFrame(Buffer.from('hello'))).toString()).toBe('hello');
    expect(decompress(rawZstdFrame(Buffer.alloc(300 * 1024, 7))).equals(Buffer.alloc(300 * 1024, 7))).toBe(true);
  });

  it('damage within the parity (bit flips, zeroed frames, frames cut out, the label, a parity frame) imports whole: the stored tape is the original, byte for byte (property)', async () => {
    const gs = groups(frames);
    let run = 0;
    const harmArb = fc.constantFrom<Harm>('flip', 'zero', 'cut');
    // Each group: nothing, up to its parity count of data frames, or its parity frame alone.
    type Hit = { frame: Frame; how: Harm; at: number };
    const groupHarm = (g: { data: Frame[]; parity: Frame }): fc.Arbitrary<Hit[]> => fc.oneof(
      fc.constant<Hit[]>([]),
      fc.uniqueArray(fc.integer({ min: 0, max: g.data.length - 1 }), { minLength: 1, maxLength: Math.ceil(g.data.length / 10) })
        .chain((idx) => fc.tuple(...idx.map((i) => fc.record({ frame: fc.constant(g.data[i]!), how: harmArb, at: fc.nat() }))).map((t): Hit[] => [...t])),
      fc.record({ frame: fc.constant(g.parity), how: harmArb, at: fc.nat() }).map((h) => [h]),
    );
    await fc.assert(fc.asyncProperty(fc.tuple(...gs.map(groupHarm)), async (perGroup) => {
      const hits = perGroup.flat();
      fc.pre(hits.length > 0);
      const bad = harm(good, hits);
      const path = join(dir, `harmed-${run}.tar.zst`);
      writeFileSync(path, bad);
      const [v] = await verifyTapes([path]);
      expect(v!.ok).toBe(false);
      expect(v!.parity?.state).toBe('repairable');
      const r = await importTapes(join(dir, `replica-${run++}`), [path]);
      const t = r.tapes[0]!;
      expect(t.outcome, t.message).toBe('imported');
      expect(new Set(t.repaired)).toEqual(new Set(hits.map((h) => h.frame.entry)));
      const stored = readdirSync(join(r.replica, 'tapes')).filter((n) => n.endsWith('.tar.zst'));
      expect(stored).toHaveLength(1);
      expect(Buffer.compare(readFileSync(join(r.replica, 'tapes', stored[0]!)), good)).toBe(0);
      expect(readdirSync(join(r.replica, 'tapes')).filter((n) => n.startsWith('.'))).toEqual([]);
    }), { numRuns: 14, seed: 2026 });
  });

  it('beyond the parity: verify says "damaged, lost" naming the frames; import keeps the segments before them and reports the exact lost range', async () => {
    const g = groups(frames)[1]!;
    const hits = g.data.slice(3, 3 + Math.ceil(g.data.length / 10) + 1).map((frame) => ({ frame, how: 'zero' as Harm, at: 0 }));
    const path = join(dir, 'beyond.tar.zst');
    writeFileSync(path, harm(good, hits));
    const [v] = await verifyTapes([path]);
    expect(v!.parity?.state).toBe('lost');
    expect(v!.parity?.lost).toEqual(hits.map((h) => h.frame.entry));
    const cli = spawnSync(BIN, ['verify', path], { encoding: 'utf8' });
    expect(cli).toExit(1);
    expect(cli.stdout).toMatch(/parity 10 %: damaged, lost: beyond the parity \(segments\/\d{8}\.jrs, /);
    const r = await importTapes(join(dir, 'replica-beyond'), [path]);
    const t = r.tapes[0]!;
    expect(t.outcome).toBe('partial');
    expect(t.repaired).toBeUndefined();
    // What is kept ends just before the first segment that is lost.
    const firstLost = (await decodeEntries(decompress(good.subarray(hits[0]!.frame.offset, hits[0]!.frame.offset + hits[0]!.frame.length)), 'test'))[0]!.content;
    expect(t.lost?.firstSeq).toBe(firstLost.readBigUInt64LE(16));
    expect(t.updates?.lastSeq).toBe(firstLost.readBigUInt64LE(16) - 1n);
  });

  it('the CLI: --parity through export, "damaged, repairable" from verify, the repair named by import; bad --parity is a usage error', async () => {
    const { g, group } = await groupWithData(join(dir, 'cli'), 150);
    await group.close();
    const out = join(dir, 'cli-tapes');
    for (const bad of ['0', '101', 'ten', '-5']) {
      const r = jshipJson('export', g, '--to', `${out}/`, '--parity', bad);
      expect(r.code, bad).toBe(2);
      expect(r.out.error.code).toBe('USAGE');
    }
    const e = jshipJson('export', g, '--to', `${out}/`, '--parity', '25%');
    expect(e).toExit(0);
    const tape = e.out.tapes[0].location as string;
    const buf = readFileSync(tape);
    const f = groups(await layout(buf))[0]!.data[1]!;
    const damaged = join(dir, 'cli-damaged.tar.zst');
    writeFileSync(damaged, harm(buf, [{ frame: f, how: 'zero', at: 0 }]));
    const v = spawnSync(BIN, ['verify', damaged], { encoding: 'utf8' });
    expect(v).toExit(1);
    expect(v.stdout).toContain(`parity 25 %: damaged, repairable: jship import rebuilds ${f.entry} from the tape's parity`);
    const i = jshipJson('import', join(dir, 'cli-replica'), damaged);
    expect(i).toExit(0);
    expect(i.out.tapes[0].outcome).toBe('imported');
    expect(i.out.tapes[0].repaired).toEqual([f.entry]);
    expect(i.out.tapes[0].sha256).toBe(e.out.tapes[0].sha256);
  });
});
