import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RecordType } from '../../src/core/record.js';
import { applyToImages, compareReplayOrder } from '../../src/core/replay.js';
import { readKeyFile, KeyRing } from '../../src/tape/crypto.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { importTapes } from '../../src/replica/import.js';
import { Replica } from '../../src/replica/replica.js';
import { KiB, makeGroup, MiB, tempDir } from '../helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { randomBytes } from 'node:crypto';
import { exportTo, groupWithData, journalRecords, tapeRecords, tapesDir, writeMixed, type Rec } from './helpers.js';

const tapeFiles = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith('.tar.zst')).sort().map((n) => join(dir, n));

describe('export and import round trips', () => {
  const dir = tempDir();

  it('plain: the tape holds exactly the journal\'s records, real tar and zstd read it, import catalogues it, and the journal is purged', async () => {
    const { group } = await groupWithData(dir, 300);
    try {
      const before = await journalRecords(group);
      await group.mark('point-a');
      const withMark = await journalRecords(group);
      const r = await exportTo(group, tapesDir(dir));
      expect(r.tapes).toHaveLength(1);
      expect(r.updates?.firstSeq).toBe(1n);
      expect(r.updates?.lastSeq).toBe(BigInt(before.length + 1));
      expect(group.journal.outSeq).toBe(BigInt(withMark.length + 1));
      const [file] = tapeFiles(tapesDir(dir));
      expect(file).toMatch(/jship-000001-0000000000000001-0000000000000301\.tar\.zst$/);
      // Real tools, no jship: list with tar, test with zstd, extract and check the segment hashes with xxhsum (Debian's xxhash).
      const list = execFileSync('tar', ['--zstd', '-tvf', file!], { encoding: 'utf8' });
      expect(list).toMatch(/jship-label\.json/);
      expect(list).toMatch(/segments\/00000001\.jrs/);
      expect(list).toMatch(/jship-trailer\.json/);
      execFileSync('zstd', ['-t', '-q', file!]);
      const x = join(dir, 'x');
      execFileSync('mkdir', ['-p', x]);
      execFileSync('tar', ['--zstd', '-xf', file!, '-C', x]);
      expect(execFileSync('sh', ['-c', 'xxhsum -c segments/*.xxh128'], { cwd: x, encoding: 'utf8' })).toMatch(/segments\/00000001\.jrs: OK/);
      // The check is real: a flipped byte in the extracted segment fails it.
      const seg = join(x, 'segments', '00000001.jrs');
      const bytes = readFileSync(seg);
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
      writeFileSync(seg, bytes);
      expect(spawnSync('sh', ['-c', 'xxhsum -c segments/*.xxh128'], { cwd: x, encoding: 'utf8' }).status).not.toBe(0);
      expect((await tapeRecords(file!)).updates).toEqual(withMark);
      const [v] = await verifyTapes([file!]);
      expect(v?.ok).toBe(true);
      const rep = await importTapes(join(dir, 'replica'), [tapesDir(dir)]);
      expect(rep.ok).toBe(true);
      expect(rep.created).toBe(true);
      expect(rep.coverage).toEqual([{ from: 1n, to: BigInt(withMark.length) }]);
      expect(rep.contiguousThrough).toBe(BigInt(withMark.length));
      const replica = await Replica.open(join(dir, 'replica'));
      try {
        const markers = replica.catalog.markers();
        // The group's volumes were new: its base at seq 0 (from the label), then the tape's marker.
        expect(markers.map((m) => [m.seq, m.kind, m.name])).toEqual([[0n, 'base-started', null], [0n, 'base-complete', null], [markers[2]!.seq, 'restore-point', 'point-a']]);
        const [t] = replica.catalog.tapes();
        expect((await tapeRecords(replica.tapePath(t!.file))).updates).toEqual(withMark);
      } finally {
        await replica.close();
      }
      // A second export continues from the chain's position.
      await writeMixed(group, 20, 7);
      const next = await exportTo(group, tapesDir(dir));
      expect(next.updates?.firstSeq).toBe(BigInt(withMark.length + 1));
      expect(next.tapes[0]?.label.prevTapeSha256).toBe(r.tapes[0]?.sha256);
      // Nothing more: nothing to export, no tape.
      const none = await exportTo(group, tapesDir(dir));
      expect(none.nothingToExport).toBe(true);
      expect(tapeFiles(tapesDir(dir))).toHaveLength(2);
    } finally {
      await group.close();
    }
  });

  it('--base under concurrent writes: base and updates from the tapes rebuild the volumes', async () => {
    const { group } = await groupWithData(dir, 100);
    try {
      const writing = writeMixed(group, 300, 3);
      const r = await exportTo(group, tapesDir(dir), { base: true });
      await writing;
      await group.flush();
      const r2 = await exportTo(group, tapesDir(dir));
      expect(r.base?.records).toBe(Math.ceil(2 * 1024 * 1024 / (64 * 1024)) + Math.ceil(512 * 1024 / (64 * 1024)));
      const all: Rec[] = [];
      for (const f of tapeFiles(tapesDir(dir))) {
        const t = await tapeRecords(f);
        all.push(...t.base, ...t.updates);
      }
      const baseId = r.base!.baseId;
      const merged = all.filter((x) => x.type === RecordType.Base || x.seq > baseId)
        .map((x) => ({ header: { type: x.type, seq: x.seq, offset: x.offset, length: x.length, volume: x.volume, flags: x.type === RecordType.Base && x.data.length === 0 ? 1 : 0 } as never as import('../../src/core/record.js').RecordHeader, data: x.data }))
        .sort((a, b) => compareReplayOrder(a.header, b.header));
      const images = group.volumes.map((v) => Buffer.alloc(v.size, 0x5a));
      for (const m of merged) applyToImages(images, m.header, m.data);
      for (let v = 0; v < images.length; v++) expect(images[v]!.equals(await group.volumes[v]!.read(0, group.volumes[v]!.size))).toBe(true);
      // Whichever export took the last writes (they may all have finished during the base), the tapes end at the journal's end.
      expect(r2.updates?.lastSeq ?? r.updates?.lastSeq).toBe(group.journal.writtenSeq - 1n);
    } finally {
      await group.close();
    }
  });

  it('--media-size: a media set of tapes, each complete and verifiable alone, chained, in any import order', async () => {
    const { group } = await groupWithData(dir, 400);
    try {
      const before = await journalRecords(group);
      const r = await exportTo(group, tapesDir(dir), { mediaSize: 96 * 1024 });
      expect(r.tapes.length).toBeGreaterThan(3);
      for (const t of r.tapes) expect(statSync(t.location).size).toBeLessThanOrEqual(96 * 1024);
      const files = tapeFiles(tapesDir(dir));
      for (const f of files) execFileSync('zstd', ['-t', '-q', f]);
      const vs = await verifyTapes(files);
      expect(vs.every((v) => v.ok)).toBe(true);
      const got: Rec[] = [];
      for (const f of files) got.push(...(await tapeRecords(f)).updates);
      expect(got).toEqual(before);
      // Reversed order, the middle one missing: a gap named by range and serial; it closes when the tape arrives.
      const middle = files[2]!;
      const rest = files.filter((f) => f !== middle).reverse();
      const a = await importTapes(join(dir, 'rep'), rest);
      expect(a.ok).toBe(true);
      expect(a.gaps).toHaveLength(1);
      const mid = (await tapeRecords(middle)).updates;
      expect(a.gaps[0]).toEqual({ from: mid[0]!.seq, to: mid[mid.length - 1]!.seq, serials: [3] });
      expect(a.missingSerials).toEqual([3]);
      expect(a.contiguousThrough).toBe(mid[0]!.seq - 1n);
      const b = await importTapes(join(dir, 'rep'), [middle]);
      expect(b.gaps).toEqual([]);
      expect(b.contiguousThrough).toBe(before[before.length - 1]!.seq);
      // The same tapes again: nothing changes.
      const c = await importTapes(join(dir, 'rep'), files);
      expect(c.tapes.every((t) => t.outcome === 'duplicate')).toBe(true);
    } finally {
      await group.close();
    }
  });

  it('encrypted: fail closed without the key or with a wrong one; the right key round-trips', async () => {
    writeFileSync(join(dir, 'k1'), Buffer.alloc(32, 1));
    writeFileSync(join(dir, 'k2'), `${'ab'.repeat(32)}\n`);
    const k1 = await readKeyFile(join(dir, 'k1'));
    const k2 = await readKeyFile(join(dir, 'k2'));
    const { group } = await groupWithData(dir, 150);
    try {
      const before = await journalRecords(group);
      const r = await exportTo(group, tapesDir(dir), { key: k1 });
      expect(r.tapes[0]?.label.encryption?.keyId).toBe(k1.keyId);
      const [file] = tapeFiles(tapesDir(dir));
      // No plaintext of the records in the tape.
      const plain = execFileSync('sh', ['-c', `zstd -dc ${file} | tar -xOf - segments/00000001.jrs`]);
      expect(plain.includes(before[0]!.data.subarray(0, 64))).toBe(false);
      const [nokey] = await verifyTapes([file!]);
      expect(nokey?.ok).toBe(true);
      expect(nokey?.recordsChecked).toBe(false);
      const [wrong] = await verifyTapes([file!], { keys: new KeyRing([k2]) });
      expect(wrong?.error?.code).toBe('TAPE_AUTH_FAILED');
      const refused = await importTapes(join(dir, 'rep'), [file!]);
      expect(refused.tapes[0]?.outcome).toBe('refused');
      expect(refused.tapes[0]?.code).toBe('TAPE_KEY_REQUIRED');
      const refused2 = await importTapes(join(dir, 'rep'), [file!], { keys: new KeyRing([k2]) });
      expect(refused2.tapes[0]?.code).toBe('TAPE_AUTH_FAILED');
      const ok = await importTapes(join(dir, 'rep'), [file!], { keys: new KeyRing([k1]) });
      expect(ok.ok).toBe(true);
      expect((await tapeRecords(file!, { keys: new KeyRing([k1]) })).updates).toEqual(before);
    } finally {
      await group.close();
    }
  });

  it('an encrypted tape compresses as a plain one does: its records are compressed, then encrypted (tape format 3); standard tools still check it', async () => {
    writeFileSync(join(dir, 'kc'), Buffer.alloc(32, 7));
    const key = await readKeyFile(join(dir, 'kc'));
    // The same compressible writes (text) into two groups: one exported plain, one encrypted.
    const text = Buffer.from('the quick brown fox jumps over the lazy dog, again and again; '.repeat(70_000)).subarray(0, 4 * MiB);
    const sizes: number[] = [];
    for (const [name, opts] of [['cplain', {}], ['cenc', { key }]] as const) {
      const g = await makeGroup(join(dir, name), { a: 8 * MiB }, { journalSize: 32 * MiB });
      const group = await openSiteGroup(g);
      try {
        for (let off = 0; off < text.length; off += 256 * KiB) await group.write(0, off, text.subarray(off, off + 256 * KiB));
        const before = await journalRecords(group);
        await exportTo(group, join(dir, name, 'tapes'), opts);
        const [file] = tapeFiles(join(dir, name, 'tapes'));
        sizes.push(statSync(file!).size);
        expect((await tapeRecords(file!, 'key' in opts ? { keys: new KeyRing([key]) } : {})).updates).toEqual(before);
        execFileSync('zstd', ['-tq', file!]);
        expect(execFileSync('tar', ['--zstd', '-tvf', file!], { encoding: 'utf8' })).toMatch(/segments\/00000001\.jrs/);
      } finally {
        await group.close();
      }
    }
    const [plainBytes, encBytes] = sizes as [number, number];
    // Before: the segment was encrypted before zstd saw it, and the tape was as large as the data (4 MiB against a few KiB).
    expect(encBytes).toBeLessThan(plainBytes * 1.5 + 64 * KiB);
    expect(encBytes).toBeLessThan(text.length / 20);
  });

  it('refuses a tape of another group and keeps the replica as it was', async () => {
    const one = await groupWithData(join(dir, 'one'), 20);
    const two = await groupWithData(join(dir, 'two'), 20);
    try {
      await exportTo(one.group, join(dir, 't1'));
      await exportTo(two.group, join(dir, 't2'));
      await importTapes(join(dir, 'rep'), [join(dir, 't1')]);
      const r = await importTapes(join(dir, 'rep'), [join(dir, 't2')]);
      expect(r.ok).toBe(false);
      expect(r.tapes[0]?.code).toBe('TAPE_FOREIGN');
      expect(readdirSync(join(dir, 'rep', 'tapes'))).toHaveLength(1);
    } finally {
      await one.group.close();
      await two.group.close();
    }
  });

  it('refuses to create a replica in a directory that holds something else', async () => {
    const { group } = await groupWithData(dir, 10);
    try {
      await exportTo(group, tapesDir(dir));
      writeFileSync(join(dir, 'notes.txt'), 'x');
      await expect(importTapes(dir, [tapesDir(dir)])).rejects.toThrowError(expect.objectContaining({ code: 'REPLICA_NOT_EMPTY' }));
      expect(existsSync(join(dir, 'replica.json'))).toBe(false);
    } finally {
      await group.close();
    }
  });

  it('writes a readable tape to a stream and waits for an ack before purging', async () => {
    const { g, group } = await groupWithData(dir, 50);
    const last = group.journal.writtenSeq - 1n;
    await group.close();
    const bin = new URL('../../bin/jship', import.meta.url).pathname;
    const out = spawnSync(process.execPath, [bin, 'export', g, '--to', '-', '--json'], { maxBuffer: 1 << 30 });
    expect(out).toExit(0);
    writeFileSync(join(dir, 'stream.tar.zst'), out.stdout);
    const summary = JSON.parse(out.stderr.toString()) as { awaitingAck: boolean; journalOut: number };
    expect(summary.awaitingAck).toBe(true);
    expect(summary.journalOut).toBe(1);
    const [v] = await verifyTapes([join(dir, 'stream.tar.zst')]);
    expect(v?.ok).toBe(true);
    expect(v?.lastSeq).toBe(last);
    // The replica acknowledges; the primary purges.
    const imp = spawnSync(process.execPath, [bin, 'import', join(dir, 'rep'), join(dir, 'stream.tar.zst'), '--ack-out', join(dir, 'ack.json'), '--ack-key', join(g, 'ack.key')], { encoding: 'utf8' });
    expect(imp).toExit(0);
    const forged = JSON.parse(readFileSync(join(dir, 'ack.json'), 'utf8')) as { seq: string };
    writeFileSync(join(dir, 'forged.json'), JSON.stringify({ ...forged, seq: String(last + 5n) }));
    const bad = spawnSync(process.execPath, [bin, 'ack', g, join(dir, 'forged.json'), '--json'], { encoding: 'utf8' });
    expect(bad).toExit(1);
    expect(JSON.parse(bad.stdout).error.code).toBe('ACK_INVALID');
    const ack = spawnSync(process.execPath, [bin, 'ack', g, join(dir, 'ack.json'), '--json'], { encoding: 'utf8' });
    expect(ack).toExit(0);
    expect(JSON.parse(ack.stdout).journalOut).toBe(Number(last + 1n));
  });
});

describe('an export under journal pressure', () => {
  const dir = tempDir();

  it('ends its tapes early and purges each as it lands: a writer waiting for journal space gets it before the export ends', async () => {
    const g = await makeGroup(dir, { a: 64 * MiB }, { journalSize: 32 * MiB, blockTimeoutMs: 600_000 });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    const tapes = tapesDir(dir);
    try {
      // Fill the journal until the next write has to wait for space.
      let off = 0;
      while (group.journal.fits(1, 256 * KiB, false)) {
        await group.write('a', off, randomBytes(256 * KiB));
        off += 256 * KiB;
      }
      const exported = exportTo(group, tapes);
      let exportDone = false;
      void exported.then(() => { exportDone = true; }, () => undefined);
      await group.write('a', off, randomBytes(256 * KiB));
      const committedWhenWritten = existsSync(tapes) ? tapeFiles(tapes).length : 0;
      expect(exportDone).toBe(false);
      const r = await exported;
      // A tape ends at a sixteenth of the data area while the journal is nearly full; then the media set goes on.
      expect(r.tapes.length).toBeGreaterThanOrEqual(2);
      expect(r.tapes[0]!.trailer.bytes).toBeLessThan(32 * MiB / 8);
      expect(committedWhenWritten).toBeLessThan(r.tapes.length);
      expect(new Set(r.tapes.map((t) => t.label.mediaSet.id)).size).toBe(1);
      expect(r.tapes.map((t) => t.trailer.mediaSet.last)).toEqual(r.tapes.map((_, i) => i === r.tapes.length - 1));
      // Back to back: every record once, in order, and the replica takes the set whole.
      const ranges = r.tapes.map((t) => t.trailer.updates!);
      for (let i = 1; i < ranges.length; i++) expect(BigInt(ranges[i]!.firstSeq)).toBe(BigInt(ranges[i - 1]!.lastSeq) + 1n);
      const imported = await importTapes(join(dir, 'rep'), tapeFiles(tapes));
      expect(imported.ok).toBe(true);
      expect(imported.gaps).toEqual([]);
    } finally {
      await group.close();
    }
  });

  it('stops its update records early (a link tape) only while writes come in', async () => {
    const g = await makeGroup(dir, { c: 64 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      let off = 0;
      while (group.journal.fits(2, 512 * KiB, false)) {
        await group.write('c', off, randomBytes(256 * KiB));
        off += 256 * KiB;
      }
      const filled = off / (256 * KiB);
      const limits = { keepUntilAck: true, maxUpdateBytes: 1024 * MiB, endUnderPressure: true };
      // A write comes in while the first tape is being written: it stops soon after a sixteenth of the journal.
      let wrote: Promise<unknown> | undefined;
      const first = await exportTo(group, join(dir, 'link-like'), { ...limits, onProgress: () => { wrote ??= group.write('c', off, randomBytes(256 * KiB)); } });
      await wrote;
      // (progress is told a segment at a time: the write comes in after the first one, 2 MiB.)
      expect(first.records).toBeLessThan(filled / 4);
      // Nothing written while the next one runs: it takes every record left, though the journal is as full.
      expect(group.state).not.toBe('active');
      const rest = await exportTo(group, join(dir, 'link-like'), limits);
      expect(first.records + rest.records).toBe(filled + 1);
    } finally {
      await group.close();
    }
  });

  it('stays one tape when no one writes: a nearly full journal exported by a one-shot command', async () => {
    const g = await makeGroup(dir, { b: 64 * MiB }, { journalSize: 32 * MiB });
    const tapes = join(dir, 'quiet-tapes');
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    let off = 0;
    try {
      while (group.journal.fits(1, 256 * KiB, false)) {
        await group.write('b', off, randomBytes(256 * KiB));
        off += 256 * KiB;
      }
    } finally {
      await group.close();
    }
    // Opened again, as `jship export` with no server opens it: nothing writes while it runs.
    const oneShot = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      expect(oneShot.state).not.toBe('active');
      const r = await exportTo(oneShot, tapes);
      expect(r.tapes.length).toBe(1);
      expect(r.records).toBe(off / (256 * KiB));
      expect(oneShot.journal.outSeq).toBe(oneShot.journal.writtenSeq);
    } finally {
      await oneShot.close();
    }
  });
});
