import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { MANIFEST_NAME, checkManifest, decodeManifest, mergeManifest, type CarryManifest } from '../../src/tape/manifest.js';
import { MiB, jshipJson, makeGroup, tempDir, toolHash } from '../helpers.js';
import { writeMixed } from './helpers.js';

const GROUP = '6f1c2b4e-0d3a-4c55-9e1f-2a7b8c9d0e1f';
const tape = (serial: number, sha = 'a'.repeat(64)) => ({ serial, file: `jship-${String(serial).padStart(6, '0')}-empty.tar.zst`, bytes: 100, sha256: sha, updates: null, baseId: null });

describe('carry manifest (codec)', () => {
  it('decodes what it wrote; refuses a manifest with any field out of shape, naming it', () => {
    const m: CarryManifest = { format: 1, groupId: GROUP, updatedAt: '2026-12-02T00:00:00.000Z', tapes: [tape(1), { ...tape(2), updates: { firstSeq: '1', lastSeq: '99' }, baseId: '5' }] };
    expect(decodeManifest(JSON.stringify(m), 'm.json')).toEqual(m);
    const bads: Array<[string, unknown]> = [
      ['not JSON', '{'],
      ['format is not 1', { ...m, format: 2 }],
      ['groupId', { ...m, groupId: 'x' }],
      ['tape 1: serial', { ...m, tapes: [{ ...tape(1), serial: 0 }] }],
      ['tape 1: file', { ...m, tapes: [{ ...tape(1), file: '../etc/passwd' }] }],
      ['tape 1: sha256', { ...m, tapes: [{ ...tape(1), sha256: 'zz' }] }],
      ['tape 1: updates', { ...m, tapes: [{ ...tape(1), updates: { firstSeq: -1, lastSeq: '2' } }] }],
    ];
    for (const [why, v] of bads) {
      expect(() => decodeManifest(typeof v === 'string' ? v : JSON.stringify(v), 'm.json'), why).toThrow(new RegExp(`m\\.json is not a jship carry manifest: .*${why.replace(/[()]/g, '\\$&')}`));
    }
  });

  it('merges a new export over what the medium holds; checks what arrived', () => {
    const old: CarryManifest = { format: 1, groupId: GROUP, updatedAt: 'x', tapes: [tape(1), tape(2), tape(3)] };
    const m = mergeManifest(old, GROUP, [tape(3, 'b'.repeat(64)), tape(4)], (f) => !f.includes('000002'), new Date(0));
    expect(m.tapes.map((t) => [t.serial, t.sha256[0]])).toEqual([[1, 'a'], [3, 'b'], [4, 'a']]);
    expect(mergeManifest({ ...old, groupId: 'other' }, GROUP, [tape(4)], () => true, new Date(0)).tapes.map((t) => t.serial)).toEqual([4]);
    expect(checkManifest(m, [{ serial: 1, sha256: 'a'.repeat(64) }, { serial: 3, sha256: null }, { serial: 9, sha256: 'c'.repeat(64) }]))
      .toEqual({ ok: false, arrived: [1], missing: [4], differs: [3], unlisted: [9] });
  });
});

describe('carry manifest (a medium carried to the secondary site)', () => {
  const dir = tempDir();

  it('export keeps the directory\'s manifest; import --manifest says all arrived, or names the tape missing and the one altered (exit 1); a bad manifest changes nothing (exit 2)', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const medium = join(dir, 'medium');
    expect(jshipJson('export', g, '--to', `${medium}/`, '--base')).toExit(0);
    for (const seed of [1, 2]) {
      const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
      await writeMixed(group, 30, seed);
      await group.close();
      expect(jshipJson('export', g, '--to', `${medium}/`)).toExit(0);
    }
    const m = decodeManifest(readFileSync(join(medium, MANIFEST_NAME), 'utf8'), 'manifest');
    const files = readdirSync(medium).filter((f) => f.endsWith('.tar.zst')).sort();
    expect(m.tapes.map((t) => t.file)).toEqual(files);
    expect(m.tapes.length).toBeGreaterThanOrEqual(3);
    for (const t of m.tapes) expect(toolHash(join(medium, t.file))).toBe(t.sha256);

    const ok = jshipJson('import', join(dir, 'rep'), medium, '--manifest', join(medium, MANIFEST_NAME));
    expect(ok).toExit(0);
    expect(ok.out.manifest).toMatchObject({ ok: true, missing: [], differs: [], foreign: false });
    expect(ok.out.manifest.arrived).toEqual(m.tapes.map((t) => t.serial));

    // A medium that lost its second tape and had its last one altered on the way.
    const bad = join(dir, 'bad-medium');
    cpSync(medium, bad, { recursive: true });
    const [, second] = m.tapes;
    const last = m.tapes[m.tapes.length - 1]!;
    rmSync(join(bad, second!.file));
    const b = readFileSync(join(bad, last.file));
    b[b.length - 200] = (b[b.length - 200] as number) ^ 0x20;
    writeFileSync(join(bad, last.file), b);
    const r = jshipJson('import', join(dir, 'rep2'), bad, '--manifest', join(bad, MANIFEST_NAME));
    expect(r).toExit(1);
    expect(r.out.manifest).toMatchObject({ ok: false, missing: [second!.serial], differs: [last.serial] });
    // A manifest that is not one: refused before anything is read or created.
    writeFileSync(join(dir, 'junk.json'), '{"format":1}');
    expect(jshipJson('import', join(dir, 'rep3'), medium, '--manifest', join(dir, 'junk.json'))).toExit(2);
    expect(existsSync(join(dir, 'rep3'))).toBe(false);
  });
});
