import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { SYNC_EVERY } from '../../src/io/files.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { KiB, MiB, makeGroup, tempDir } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { failFirstDatasync, recordSyncs } from '../sync-spies.js';

/**
 * An import writes its copy of a tape back to disk as it verifies it: the
 * sync that ends the copy then waits for the last SYNC_EVERY bytes at most,
 * not for the whole tape after all the verifying is done (a 343 MiB tape's
 * final fsync took 0.25 s, with nothing left to overlap it).
 */
describe('an import makes its copy durable as it goes', () => {
  const dir = tempDir();
  let tapes: string[] = [];
  beforeEach(async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: SYNC_EVERY + 64 * MiB, chunkSize: 64 * KiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    await group.write('a', 0, Buffer.alloc(4096, 1));
    await exportTo(group, join(dir, 't'), { base: true });
    // Incompressible: a tape larger than SYNC_EVERY.
    for (let i = 0; i < SYNC_EVERY / MiB + 8; i++) await group.write('a', (i % 8) * MiB, randomBytes(MiB));
    await exportTo(group, join(dir, 't'));
    await group.close();
    tapes = readdirSync(join(dir, 't')).filter((n) => n.endsWith('.tar.zst')).sort().map((n) => join(dir, 't', n));
    expect(tapes.length).toBe(2);
  }, 120_000);
  afterEach(() => vi.restoreAllMocks());

  it('a datasync of the incoming copy starts before the tape is read to its end, and the copy is synced once more at the end', async () => {
    const rep = join(dir, 'rep');
    expect((await importTapes(rep, [tapes[0]!])).ok).toBe(true);
    const calls = await recordSyncs(dir);
    const r = await importTapes(rep, [tapes[1]!]);
    expect(r.ok, r.tapes.map((t) => t.message).join('; ')).toBe(true);
    // The copy's closing sync: the last sync of a handle that had background datasyncs.
    const copy = calls.find((c) => c.op === 'datasync')?.h;
    expect(copy, 'no datasync while the tape was copied').toBeDefined();
    const mine = calls.filter((c) => c.h === copy).map((c) => c.op);
    expect(mine[0]).toBe('datasync');
    expect(mine[mine.length - 1]).toBe('sync');
  }, 120_000);

  it('a background datasync that fails fails the tape: nothing is catalogued or left behind, and the tape imports once the disk answers again', async () => {
    const rep = join(dir, 'rep');
    expect((await importTapes(rep, [tapes[0]!])).ok).toBe(true);
    const calls = await failFirstDatasync(dir);
    await expect(importTapes(rep, [tapes[1]!])).rejects.toThrow(/EIO/);
    expect(calls()).toBeGreaterThanOrEqual(1);
    expect(readdirSync(join(rep, 'tapes')).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(readdirSync(join(rep, 'tapes')).length).toBe(1);
    vi.restoreAllMocks();
    const again = await importTapes(rep, [tapes[1]!]);
    expect(again.tapes.map((t) => t.outcome)).toEqual(['imported']);
  }, 120_000);
});
