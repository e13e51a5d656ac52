import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { GROUP_VOLUME, RecordType, dataCrc, encodeRecord, type RecordHeader } from '../../src/core/record.js';
import { encodeMarker } from '../../src/core/marker.js';
import { DirDestination } from '../../src/tape/destination.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import { SegmentKind } from '../../src/tape/segment.js';
import { readTape, type TapeItem } from '../../src/tape/tape-reader.js';
import { MediaSetWriter, type TapeWriterEnv } from '../../src/tape/tape-writer.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { verifySummary } from './source-contract.js';
import { KeyRing, readKeyFile, type TapeKey } from '../../src/tape/crypto.js';
import { importTapes } from '../../src/replica/import.js';
import { tempDir, toolHash } from '../helpers.js';
import { relabel } from '../replica/forge.js';

/**
 * Golden tapes (test/fixtures/tapes/): written by a tape writer whose clock,
 * host and ids are fixed, from records made here, so that the same bytes come
 * out on every run. The test writes them again and compares byte for byte
 * (the format and the writer have not drifted), reads every fixture whole and
 * fed one byte at a time (the reader does not depend on chunk boundaries),
 * and verifies each against its expected report — the damaged ones too.
 * JSHIP_UPDATE_GOLDEN=1 writes the fixtures and expected.json anew (then
 * review the diff: a format change needs a version rule, docs/FORMAT.md).
 */
const FIXTURES = new URL('../fixtures/tapes/', import.meta.url).pathname;
const UPDATE = process.env.JSHIP_UPDATE_GOLDEN === '1';
/**
 * Fixtures of earlier tape format versions, kept as written then: v2-… (an
 * encrypted tape before its segments were compressed; a plain tape with
 * SHA-256 segment hashes), v3-… (an encrypted tape with SHA-256 segment hashes).
 */
const legacy = (f: string): boolean => /^v\d-/.test(f);
const GROUP = '6a1e4f0c-2b7d-4c59-9e13-0d5a7b3c8f21';
const OTHER_GROUP = '0f9e8d7c-6b5a-4493-8271-605f4e3d2c1b';
const VOLUMES = [{ name: 'db', size: 1024 * 1024 }, { name: 'log', size: 256 * 1024 }];
const T0 = 1_796_000_000_000_000_000n; // 2026-11-29, in ns

function env(): TapeWriterEnv {
  let id = 0;
  let nonce = 0;
  return {
    now: () => new Date(Number(T0 / 1_000_000n)), host: 'golden-host', newId: () => `00000000-0000-4000-8000-${String(++id).padStart(12, '0')}`,
    // A counter: never repeated under the golden key (tests only).
    nonce: () => Buffer.from(`${String(++nonce).padStart(24, '0')}`, 'hex'),
  };
}

/** The golden tapes' key (committed beside them: it protects nothing). */
const KEY_FILE = join(FIXTURES, 'golden.key');
const goldenKey = (): Promise<TapeKey> => readKeyFile(KEY_FILE);

/** A small journal's worth of records: writes of several sizes to both volumes, a zero range, a trim, two restore points. */
function records(): Array<{ header: RecordHeader; data: Buffer }> {
  const out: Array<{ header: RecordHeader; data: Buffer }> = [];
  let seq = 1n;
  const add = (type: RecordType, volume: number, offset: number, length: number, data: Buffer): void => {
    const s = seq++;
    out.push({ header: { type, flags: 0, volume, seq: s, timestamp: T0 + s * 1000n, offset, length, dataPos: 0n, aux: 0n, dataCrc: data.length > 0 ? dataCrc(data) : 0 }, data });
  };
  for (let i = 0; i < 24; i++) {
    const len = 512 * (1 + (i % 7));
    const data = Buffer.alloc(len, 0);
    // Half patterned, half from a fixed xorshift: some compression, not all.
    let x = 0x9e3779b9 ^ i;
    for (let b = 0; b < len; b++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      data[b] = b < len / 2 ? (i * 31 + b * 7) & 0xff : x & 0xff;
    }
    add(RecordType.Update, i % 3 === 2 ? 1 : 0, (i * 12_288) % (200 * 1024), len, data);
    if (i === 9) {
      const m = encodeMarker({ kind: 'restore-point', name: 'golden-1' });
      add(RecordType.Marker, GROUP_VOLUME, 0, m.length, m);
    }
  }
  add(RecordType.Zero, 0, 64 * 1024, 8192, Buffer.alloc(0));
  add(RecordType.Trim, 1, 4096, 4096, Buffer.alloc(0));
  const m = encodeMarker({ kind: 'restore-point', name: 'golden-2' });
  add(RecordType.Marker, GROUP_VOLUME, 0, m.length, m);
  return out;
}

/** Writes the tapes of one fixture into `dir` and returns their file names, in order. */
async function write(dir: string, o: { groupId?: string; link?: boolean; mediaSize?: number; epochs?: Array<{ generation: number; startSeq: string }>; key?: TapeKey }): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const pool = new FramePool({ threads: 1 });
  try {
    const w = new MediaSetWriter({
      groupId: o.groupId ?? GROUP, volumes: VOLUMES, firstSerial: 1, prevSha256: null, destination: new DirDestination(dir), pool,
      segmentBytes: 8192, env: env(), ...(o.link ? { link: { secondary: 'site-b' } } : {}), ...(o.mediaSize ? { mediaSize: o.mediaSize } : {}),
      ...(o.epochs ? { epochs: o.epochs } : {}),
      ...(o.key ? { key: o.key } : {}),
    });
    for (const r of records()) await w.add(SegmentKind.Update, r.header, encodeRecord(r.header), r.data);
    return (await w.finish()).map((t) => t.location.split('/').pop() as string);
  } finally {
    await pool.close();
  }
}

/** Damaged copies made from the plain tape: cut short, a byte flipped in a segment, the trailer's last frame harmed. */
function damaged(plain: Buffer): Record<string, Buffer> {
  const flip = (b: Buffer, at: number): Buffer => {
    const c = Buffer.from(b);
    c[at] = (c[at] as number) ^ 0xff;
    return c;
  };
  return {
    'truncated.tar.zst': plain.subarray(0, Math.floor(plain.length * 0.6)),
    'flipped-segment.tar.zst': flip(plain, Math.floor(plain.length / 2)),
    'bad-trailer.tar.zst': flip(plain, plain.length - 200),
  };
}

async function items(chunks: AsyncIterable<Buffer>, where: string, k: { keys?: KeyRing } = {}): Promise<TapeItem[]> {
  const out: TapeItem[] = [];
  for await (const it of readTape(chunks, { where, ...k })) out.push(it);
  return out;
}

async function* whole(b: Buffer): AsyncIterable<Buffer> {
  yield b;
}

async function* byteByByte(b: Buffer): AsyncIterable<Buffer> {
  for (let i = 0; i < b.length; i++) yield b.subarray(i, i + 1);
}

describe('golden tapes', () => {
  const dir = tempDir();

  it('the writer makes the committed fixtures byte for byte; every fixture reads the same whole and byte by byte and verifies as expected', async () => {
    const fresh = join(dir, 'fresh');
    const made: Record<string, Buffer> = {};
    const name = (prefix: string, f: string): string => `${prefix}-${f}`;
    const key = await goldenKey();
    const keys = new KeyRing([key]);
    for (const [prefix, o] of [['plain', {}], ['link', { link: true }], ['set', { mediaSize: 24 * 1024 }], ['foreign', { groupId: OTHER_GROUP }], ['encrypted', { key }]] as const) {
      const files = await write(join(fresh, prefix), o);
      for (const f of files) made[name(prefix, f)] = readFileSync(join(fresh, prefix, f));
    }
    expect(Object.keys(made).filter((f) => f.startsWith('set-')).length).toBeGreaterThanOrEqual(2);
    const plain = made[Object.keys(made).find((f) => f.startsWith('plain-')) as string] as Buffer;
    Object.assign(made, damaged(plain));

    if (UPDATE) {
      mkdirSync(FIXTURES, { recursive: true });
      for (const f of readdirSync(FIXTURES).filter((x) => x.endsWith('.tar.zst') && !legacy(x))) rmSync(join(FIXTURES, f));
      for (const [f, b] of Object.entries(made)) writeFileSync(join(FIXTURES, f), b);
    }
    const all = readdirSync(FIXTURES).filter((f) => f.endsWith('.tar.zst')).sort();
    const committed = all.filter((f) => !legacy(f));
    expect(committed).toEqual(Object.keys(made).sort());
    // Tapes of an earlier format version stay readable: never written again, read and verified below.
    expect(all.filter(legacy).length).toBeGreaterThan(0);
    for (const f of committed) expect(readFileSync(join(FIXTURES, f)).equals(made[f] as Buffer), `${f} is written byte for byte as committed`).toBe(true);

    const reports: Record<string, object> = {};
    for (const f of all) {
      const path = join(FIXTURES, f);
      const b = readFileSync(path);
      const withKey = f.includes('encrypted-') ? { keys } : {};
      const [v] = await verifyTapes([path], withKey);
      // Imported into a replica of its own (the other group's tape: into a replica of the plain tape's group).
      const rep = join(dir, 'replicas', f);
      if (f.startsWith('foreign-')) await importTapes(rep, [join(FIXTURES, committed.find((x) => x.startsWith('plain-')) as string)]);
      const imp = (await importTapes(rep, [path], withKey)).tapes[0];
      // The tape's hash is its file's as the standard tool of its version computes it (FORMAT "The tape's hash").
      if (v!.ok) expect(v!.sha256, `${f}: its hash is ${v!.label!.version >= 5 ? 'b3sum' : 'sha256sum'}'s`).toBe(toolHash(path, v!.label!.version));
      reports[f] = { verify: { ...verifySummary(v!), recordsChecked: v!.recordsChecked, encrypted: v!.label?.encryption?.keyId ?? null }, import: { outcome: imp?.outcome, code: imp?.code ?? null, records: imp?.records ?? null } };
      // The reader: the same items (or the same error) whole and one byte at a time.
      const read = async (src: AsyncIterable<Buffer>, k: { keys?: KeyRing }): Promise<unknown> => items(src, f, k).then((x) => ({ items: x.map(({ offset: _o, length: _l, ...rest }) => rest) }), (e: { code?: string; message: string }) => ({ error: e.code ?? e.message }));
      const a = await read(whole(b), withKey);
      expect(await read(byteByByte(b), withKey), `${f} read one byte at a time`).toEqual(a);
      expect('error' in (a as object), `${f}: the reader fails exactly when verify does`).toBe(!v!.ok);
    }
    // The media set verifies as one chain, given together.
    const set = committed.filter((f) => f.startsWith('set-')).map((f) => join(FIXTURES, f));
    expect((await verifyTapes(set)).map((v) => ({ ok: v.ok, chain: v.chain }))).toEqual(set.map(() => ({ ok: true, chain: [] })));
    const expectedPath = join(FIXTURES, 'expected.json');
    if (UPDATE) writeFileSync(expectedPath, `${JSON.stringify(reports, null, 2)}\n`);
    expect(reports).toEqual(JSON.parse(readFileSync(expectedPath, 'utf8')));
  }, 120_000);

  it('a compressed segment under a label of format 2 (which never has one) is damage: the tape was assembled from parts', async () => {
    const f = readdirSync(FIXTURES).find((n) => n.startsWith('v3-encrypted-')) as string;
    const forged = await relabel(readFileSync(join(FIXTURES, f)), (l) => ({ ...l, version: 2 }));
    const got = await items((async function* () { yield forged; })(), 'forged', { keys: new KeyRing([await goldenKey()]) }).then(() => null, (e: unknown) => e);
    expect(got).toMatchObject({ code: 'TAPE_DAMAGED', message: expect.stringMatching(/compressed inside its encryption, which a version 2 tape never is/) });
  });

  it('segment hashes follow the label\'s version: SHA-256 entries under a version-4 label, or XXH3-128 under a version-3 one, are damage', async () => {
    const keys = new KeyRing([await goldenKey()]);
    const read = async (name: string, version: 2 | 3 | 4): Promise<unknown> => {
      const forged = await relabel(readFileSync(join(FIXTURES, readdirSync(FIXTURES).find((n) => n.startsWith(name)) as string)), (l) => ({ ...l, version }));
      return items((async function* () { yield forged; })(), 'forged', { keys }).then(() => null, (e: unknown) => e);
    };
    expect(await read('v2-plain-', 4)).toMatchObject({ code: 'TAPE_DAMAGED', message: expect.stringMatching(/segments\/00000001\.jrs is not followed by its XXH3-128 entry \(segments\/00000001\.xxh128\), as a version 4 tape has/) });
    expect(await read('v3-encrypted-', 4)).toMatchObject({ code: 'TAPE_DAMAGED', message: expect.stringMatching(/not followed by its XXH3-128 entry/) });
    expect(await read('plain-', 2)).toMatchObject({ code: 'TAPE_DAMAGED', message: expect.stringMatching(/not followed by its SHA-256 entry \(segments\/00000001\.sha256\), as a version 2 tape has/) });
    expect(await read('encrypted-', 3)).toMatchObject({ code: 'TAPE_DAMAGED', message: expect.stringMatching(/not followed by its SHA-256 entry/) });
    // Unchanged, each reads.
    expect(await read('plain-', 4)).toBeNull();
    expect(await read('v2-plain-', 2)).toBeNull();
  });

  it('a chain goes on across the format change: a version-5 tape after a version-4 one names its SHA-256, verifies with it given together and imports after it', async () => {
    const v4 = join(FIXTURES, readdirSync(FIXTURES).find((n) => n.startsWith('v4-set-')) as string);
    const second = readFileSync(join(FIXTURES, readdirSync(FIXTURES).find((n) => n.startsWith('set-jship-000002')) as string));
    const sha = toolHash(v4, 4);
    const d = join(dir, 'across');
    mkdirSync(d, { recursive: true });
    const next = join(d, 'jship-000002-0000000000000015-0000000000000028.tar.zst');
    writeFileSync(next, await relabel(second, (l) => ({ ...l, prevTapeSha256: sha })));
    const vs = await verifyTapes([v4, next]);
    expect(vs.map((x) => ({ ok: x.ok, chain: x.chain, version: x.label?.version }))).toEqual([{ ok: true, chain: [], version: 4 }, { ok: true, chain: [], version: 5 }]);
    expect(vs[0]?.sha256).toBe(sha);
    expect(vs[1]?.sha256).toBe(toolHash(next, 5));
    const rep = join(d, 'rep');
    const imported = await importTapes(rep, [v4, next]);
    expect(imported.tapes.map((t) => [t.outcome, t.code])).toEqual([['imported', null], ['imported', null]]);
    // Named with another hash, the same tape breaks the chain (the check is not skipped across versions).
    const forged = join(d, 'forged', 'jship-000002-0000000000000015-0000000000000028.tar.zst');
    mkdirSync(join(d, 'forged'));
    writeFileSync(forged, await relabel(second, (l) => ({ ...l, prevTapeSha256: toolHash(v4, 5) })));
    expect((await verifyTapes([v4, forged]))[1]?.chain).toEqual([expect.stringMatching(/names a previous tape with hash [0-9a-f]{64}, but tape 1 \(.*\) has SHA-256 [0-9a-f]{64}/)]);
    expect((await importTapes(join(d, 'rep2'), [v4, forged])).tapes.map((t) => t.code)).toEqual([null, 'TAPE_CHAIN_BROKEN']);
  });

  it('a label of a version this jship does not read (6, a newer one; 1, an older one) is refused with what to do, and nothing is imported', async () => {
    const plain = readFileSync(join(FIXTURES, readdirSync(FIXTURES).find((n) => n.startsWith('plain-')) as string));
    const d = join(dir, 'versions');
    mkdirSync(d, { recursive: true });
    for (const [version, hint] of [[6, /newer jship/], [1, /earlier jship/]] as const) {
      const forged = await relabel(plain, (l) => ({ ...l, version: version as 5 }));
      const got = await items((async function* () { yield forged; })(), 'forged').then(() => null, (e: unknown) => e);
      expect(got).toMatchObject({ code: 'TAPE_BAD_LABEL', message: expect.stringContaining(`tape format version ${version} is not supported (this jship reads versions 2 to 5)`), hint: expect.stringMatching(hint) });
      const file = join(d, `v${version}-jship-000001-0000000000000001-0000000000000028.tar.zst`);
      writeFileSync(file, forged);
      const rep = join(d, `rep${version}`);
      expect((await importTapes(rep, [file])).tapes.map((t) => [t.outcome, t.code])).toEqual([['refused', 'TAPE_BAD_LABEL']]);
      expect(existsSync(join(rep, 'tapes')) ? readdirSync(join(rep, 'tapes')).filter((n) => n.endsWith('.tar.zst')) : []).toEqual([]);
    }
  });

  it('tapes of two epochs given together are two chains: tape 1 of each is not "serial 1 twice"', async () => {
    const d = join(dir, 'epochs');
    const [e2] = await write(d, { epochs: [{ generation: 2, startSeq: '1' }] });
    expect(e2).toMatch(/-e2\.tar\.zst$/);
    const plain = readdirSync(FIXTURES).filter((f) => f.startsWith('set-')).map((f) => join(FIXTURES, f));
    const v = await verifyTapes([...plain, join(d, e2!)]);
    expect(v.map((x) => ({ ok: x.ok, chain: x.chain }))).toEqual([...plain, e2].map(() => ({ ok: true, chain: [] })));
  });
});
