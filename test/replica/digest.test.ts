import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { DirLock } from '../../src/io/dir-lock.js';
import { importTapes } from '../../src/replica/import.js';
import { PointMount } from '../../src/replica/mount.js';
import { verifyDeep } from '../../src/replica/deep-verify.js';
import tar from 'tar-stream';
import { compress, decompress } from 'zstd-napi';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { RecordType, dataCrc, encodeRecord } from '../../src/core/record.js';
import { decodeSegmentHeader, parseRecords, SEGMENT_HEADER_SIZE } from '../../src/tape/segment.js';
import { decodeEntries } from '../../src/tape/tar-entry.js';
import { hashSegment, segmentHashReady, sumEntryName, sumLine } from '../../src/tape/segment-hash.js';
import { digestVolume, groupRoot, leafHasher, type PointDigest } from '../../src/core/volume-digest.js';
import { readReplicaState } from '../../src/replica/replica-state.js';
import { KiB, MiB, jshipJson, jshipProc, makeGroup, tempDir } from '../helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';
import { frames as tapeFrames } from './forge.js';

const sizes = { a: 3 * MiB + 512, b: 1 * MiB, c: 768 * KiB };

/** The point digests the group logged (digests.jsonl). */
function logged(g: string): PointDigest[] {
  return readFileSync(join(g, 'digests.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as PointDigest);
}

async function pack(entries: Array<{ name: string; content: Buffer }>): Promise<Buffer> {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((r) => p.on('end', () => r()));
  for (const e of entries) p.entry({ name: e.name, size: e.content.length }, e.content);
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/**
 * A forger's copy of a tape: the data of the update record with the highest
 * seq below `before` altered (one byte), its CRC recomputed, its segment's
 * hash entry and the trailer's list recomputed — every checksum the tape
 * carries agrees. Only the primary's digests (left as they were) can tell.
 */
async function forge(path: string, before: bigint): Promise<void> {
  const buf = readFileSync(path);
  const frames: Buffer[] = tapeFrames(buf).map(([off, len]) => buf.subarray(off, off + len));
  // The record to alter: the last one with data before the point.
  let target: { frame: number; seq: bigint } | undefined;
  for (const [i, f] of frames.entries()) {
    const [e] = await decodeEntries(decompress(f), path);
    if (!e?.name.startsWith('segments/')) continue;
    const sh = decodeSegmentHeader(e.content, path);
    for (const r of parseRecords(e.content.subarray(SEGMENT_HEADER_SIZE), sh, path)) {
      if (r.header.type === RecordType.Update && r.data.length > 0 && r.header.seq < before && (!target || r.header.seq > target.seq)) target = { frame: i, seq: r.header.seq };
    }
  }
  if (!target) throw new Error('nothing to forge');
  const [e] = await decodeEntries(decompress(frames[target.frame]!), path);
  const content = Buffer.from(e!.content);
  const sh = decodeSegmentHeader(content, path);
  const payload = content.subarray(SEGMENT_HEADER_SIZE);
  const rec = parseRecords(payload, sh, path).find((r) => r.header.seq === target!.seq)!;
  const at = rec.data.byteOffset - payload.byteOffset;
  payload[at] = (payload[at] as number) ^ 0xff;
  encodeRecord({ ...rec.header, dataCrc: dataCrc(payload.subarray(at, at + rec.data.length)) }, payload, at - 64);
  await segmentHashReady();
  const hash = hashSegment('xxh128', content);
  const body = await pack([{ name: e!.name, content }, { name: sumEntryName(e!.name, 'xxh128'), content: sumLine(hash, e!.name) }]);
  frames[target.frame] = compress(body.subarray(0, body.length - 1024));
  const last = frames.length - 1;
  const [t] = await decodeEntries(decompress(frames[last]!), path);
  const trailer = JSON.parse(t!.content.toString('utf8'));
  trailer.segments.find((s: { name: string }) => s.name === e!.name).xxh128 = hash;
  frames[last] = compress(await pack([{ name: t!.name, content: Buffer.from(JSON.stringify(trailer)) }]));
  writeFileSync(path, Buffer.concat(frames));
}

describe('point digests: restores that prove equality with the primary', () => {
  const dir = tempDir();

  it('every restore point and base completion of a randomized three-volume workload restores "proved equal"; the digests kept across a clean close are those computed from scratch', async () => {
    const g = await makeGroup(dir, sizes, { journalSize: 32 * MiB, chunkSize: 64 * KiB, existingFiles: true });
    let group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    const tapes = join(dir, 'tapes');
    await exportTo(group, tapes, { base: true });
    const images = new Map<string, Buffer[]>();
    const capture = (name: string): void => {
      images.set(name, Object.keys(sizes).map((v) => readFileSync(join(dir, `${v}.img`))));
    };
    for (const [i, name] of ['m1', 'm2', 'm3'].entries()) {
      await writeMixed(group, 60, 100 + i, { unaligned: true });
      await group.flush();
      await group.mark(name);
      capture(name);
      if (i === 1) {
        // A clean close keeps the chunk table: the next point reads only what changed, and agrees with a full read.
        await group.close();
        expect(existsSync(join(g, 'digest-table.bin'))).toBe(true);
        group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
        // Taken at the open: a crash from here on must not find it.
        expect(existsSync(join(g, 'digest-table.bin'))).toBe(false);
      }
    }
    await writeMixed(group, 30, 9, { unaligned: true });
    await exportTo(group, tapes);
    await group.close();
    const digests = logged(g);
    expect(digests.map((d) => d.kind)).toEqual(['base-complete', 'restore-point', 'restore-point', 'restore-point']);
    const m3 = digests[3]!;
    // m3's root (its chunk table carried across the close and reopen) is the root of the images taken at m3, computed from scratch.
    const hash = await leafHasher();
    const m3vols = [];
    for (const [k, [v, size]] of Object.entries(sizes).entries()) m3vols.push(await digestVolume(v, size, 64 * KiB, hash, async (o, l) => images.get('m3')![k]!.subarray(o, o + l)));
    expect(groupRoot(m3vols)).toBe(m3.root);
    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    for (const name of ['m1', 'm2', 'm3']) {
      const out = join(dir, `restored-${name}`);
      const r = jshipJson('restore', rep, '--marker', name, '--target', `${out}/`);
      expect(r).toExit(0);
      expect(r.out.proof).toMatchObject({ kind: 'restore-point', name, equal: true, whole: true });
      for (const [k, v] of Object.keys(sizes).entries()) expect(readFileSync(join(out, `${v}.img`)).equals(images.get(name)![k]!), `${name} ${v}`).toBe(true);
      expect(jshipJson('verify', '--deep', rep, '--marker', name)).toExit(0);
    }
    // A mount of a restore point proves it while it serves it.
    const m = await jshipProc('mount', rep, '--marker', 'm2', '--socket', join(dir, 'm2.sock'));
    for (let i = 0; i < 1200 && !m.events.some((e) => e.event === 'proof'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(m.events.find((e) => e.event === 'proof')).toMatchObject({ equal: true, whole: true, name: 'm2', text: expect.stringMatching(/^proved equal to the primary at marker m2/) });
    expect(await m.stop()).toBe(0);
    // One volume alone: compared with its own root.
    const one = jshipJson('restore', rep, '--marker', 'm2', '--volume', 'b', '--target', join(dir, 'b-m2.img'));
    expect(one.out.proof).toMatchObject({ equal: true, whole: false, volumes: [{ name: 'b', equal: true }] });
    // The SVOLs, to the base's completion and to the latest point.
    const base = jshipJson('restore', rep, '--seq', String(digests[0]!.seq));
    expect(base.out.proof).toMatchObject({ kind: 'base-complete', equal: true });
    const latest = jshipJson('restore', rep);
    expect(latest).toExit(0);
    expect(latest.out.proof).toBeNull();
  }, 120_000);

  it('a forged tape (a record altered, every checksum recomputed) is caught: the restore fails loudly and puts nothing in place; verify --deep says so without writing', async () => {
    const g = await makeGroup(join(dir, 'f'), { a: 2 * MiB, b: 1 * MiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < 40; i++) await group.write(i % 2 === 0 ? 'a' : 'b', (i * 37 * KiB) % MiB, randomBytes(5000 + i));
    const m = await group.mark('before-forgery');
    await group.write('a', 0, randomBytes(4096));
    const tapes = join(dir, 'f-tapes');
    await exportTo(group, tapes);
    await group.close();
    const rep = join(dir, 'f-rep');
    expect(jshipJson('import', rep, tapes)).toExit(0);
    expect(jshipJson('verify', '--deep', rep, '--marker', 'before-forgery')).toExit(0);
    const stored = join(rep, 'tapes', readdirSync(join(rep, 'tapes')).find((n) => n.endsWith('.tar.zst'))!);
    await forge(stored, m.seq);
    expect(jshipJson('verify', stored)).toExit(0); // every checksum holds
    expect(jshipJson('catalog', rep, '--rebuild')).toExit(0);
    const out = join(dir, 'f-out');
    const r = jshipJson('restore', rep, '--marker', 'before-forgery', '--target', `${out}/`);
    expect(r).toExit(1);
    expect(r.out.error.code).toBe('DIGEST_MISMATCH');
    expect(r.out.error.message).toMatch(/NOT equal to the primary at marker before-forgery: volume [ab] differs from the primary's digest; nothing was put in place/);
    expect(existsSync(join(out, 'a.img')) || existsSync(join(out, 'b.img'))).toBe(false);
    const deep = jshipJson('verify', '--deep', rep, '--marker', 'before-forgery');
    expect(deep).toExit(1);
    expect(deep.out.proof.equal).toBe(false);
    // A mount of the forged point stops serving it once the proof fails.
    const fm = await jshipProc('mount', rep, '--marker', 'before-forgery', '--socket', join(dir, 'f.sock'));
    expect(await fm.exited).toBe(1);
    expect(fm.events.find((e) => e.event === 'proof')).toMatchObject({ equal: false });
    expect(fm.events.find((e) => e.event === 'stopped')).toMatchObject({ signal: null });
    // Into the SVOLs: refused the same way, and the SVOLs are not taken for that point.
    const svol = jshipJson('restore', rep, '--marker', 'before-forgery');
    expect(svol).toExit(1);
    expect((await readReplicaState(rep)).svol.restoredSeq).toBe('0');
  }, 120_000);
});

describe('verify --deep beside an import', () => {
  const dir = tempDir();

  it('reads the digest without the replica\'s lock, which its mount let go of and an import may hold meanwhile', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 8 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    await group.write('a', 0, randomBytes(64 * KiB));
    await group.mark('m1');
    await exportTo(group, join(dir, 't'), { base: true });
    await group.close();
    const rep = join(dir, 'rep');
    await importTapes(rep, [join(dir, 't')]);
    // An import takes the replica as soon as the mount has let go of it.
    const open = PointMount.open.bind(PointMount);
    let importing: DirLock | undefined;
    vi.spyOn(PointMount, 'open').mockImplementation(async (...args) => {
      const m = await open(...args);
      importing = await DirLock.acquire(join(rep, 'lock'), 'an import');
      return m;
    });
    try {
      const v = await verifyDeep(rep, { kind: 'marker', name: 'm1' });
      expect(v.proof.equal).toBe(true);
      expect(importing?.released).toBe(false);
    } finally {
      vi.restoreAllMocks();
      await importing?.release();
    }
  });
});
