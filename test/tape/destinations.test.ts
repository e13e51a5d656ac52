import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { DirDestination, FileDestination, StreamDestination, throttled, type TapeDestination, type TapeOutput } from '../../src/tape/destination.js';
import { Throttle } from '../../src/io/throttle.js';
import { SYNC_EVERY } from '../../src/io/files.js';
import { failFirstDatasync, recordSyncs } from '../sync-spies.js';
import { destinationContract, scratch } from './destination-contract.js';

/**
 * The reference backend: tapes in memory, visible once committed. It shows
 * the contract with nothing else in the way.
 */
class MemoryDestination implements TapeDestination {
  readonly where = 'memory';
  readonly durable = true;
  readonly splittable = true;
  readonly tapes = new Map<string, Buffer>();

  async open(): Promise<TapeOutput> {
    const parts: Buffer[] = [];
    return {
      write: async (chunk) => { parts.push(Buffer.from(chunk)); },
      commit: async (name) => {
        this.tapes.set(name, Buffer.concat(parts));
        return `memory:${name}`;
      },
      abort: async () => { parts.length = 0; },
    };
  }
}

/** Tapes in a directory: what `ls` shows, never a hidden partial file. */
const listed = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('jship-manifest')).sort() : []);

describe('tape destinations: one contract (tape/destination.ts)', () => {
  const next = scratch();

  destinationContract('memory', async () => {
    const m = new MemoryDestination();
    return { dest: m, read: async (l) => m.tapes.get(l.slice('memory:'.length)) as Buffer, visible: async () => [...m.tapes.keys()].sort(), abortLeavesNothing: true };
  });

  destinationContract('directory', async () => {
    const dir = next();
    mkdirSync(dir, { recursive: true });
    return { dest: new DirDestination(dir), read: async (l) => readFileSync(l), visible: async () => listed(dir), abortLeavesNothing: true };
  });

  destinationContract('file', async () => {
    const dir = next();
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'one.tar.zst');
    return { dest: new FileDestination(path), read: async (l) => readFileSync(l), visible: async () => listed(dir), abortLeavesNothing: true };
  });

  destinationContract('stream', async () => {
    // A pipe: it takes a chunk's bytes a moment later, then calls back (as a write to a file descriptor does).
    const got: Buffer[] = [];
    const out = new Writable({
      write(c: Buffer, _enc, cb) {
        setImmediate(() => {
          got.push(Buffer.from(c));
          cb();
        });
      },
    });
    const dest = new StreamDestination(out, 'a pipe');
    let committed = 0;
    return {
      dest: { where: dest.where, durable: dest.durable, splittable: dest.splittable, open: async (s, f) => {
        const o = await (dest as TapeDestination).open(s, f);
        return { write: (c) => o.write(c), commit: async (n, b, t) => { const l = await o.commit(n, b, t); committed++; return l; }, abort: () => o.abort() };
      } },
      read: async () => Buffer.concat(got),
      visible: async () => Array.from({ length: committed }, (_v, i) => `tape ${i + 1}`),
      abortLeavesNothing: false,
    };
  });
});

describe('a partial tape file has one writer (tape/destination.ts)', () => {
  const next = scratch();

  // Two groups exporting to one directory at once both wrote .jship-000001.partial: each removed the other's,
  // and one linked the other's bytes under its own tape's name, then counted it and purged its journal.
  it('a second export opening the same partial file is refused while the first writes it, and the first\'s tape is its own', async () => {
    const dir = next();
    mkdirSync(dir, { recursive: true });
    const first = await new DirDestination(dir).open(1);
    await first.write(Buffer.from('the first export\'s bytes'));
    const err = await new DirDestination(dir).open(1).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'TAPE_EXISTS' });
    expect((err as Error).message).toMatch(new RegExp(`in use by process ${process.pid}.*another export`));
    const at = await first.commit('jship-000001-t.tar.zst');
    expect(readFileSync(at, 'utf8')).toBe('the first export\'s bytes');
    // Once the first is done, the name is free; a partial left by a killed export (its lock stale) is replaced.
    const again = await new DirDestination(dir).open(1);
    await again.abort();
    expect(readdirSync(dir).sort()).toEqual(['jship-000001-t.tar.zst']);
  });

  it('a directory holds one group\'s tapes: another group\'s export is refused while its manifest names tapes still there', async () => {
    // Another group's tapes with other names went in beside the first's, and its manifest replaced the first's.
    const dir = next();
    mkdirSync(dir, { recursive: true });
    const a = '00000000-0000-4000-8000-00000000000a';
    const b = '00000000-0000-4000-8000-00000000000b';
    writeFileSync(join(dir, 'jship-000001-0000000000000001-0000000000000003.tar.zst'), 'group a\'s tape');
    writeFileSync(join(dir, 'jship-manifest.json'), JSON.stringify({ format: 1, groupId: a, updatedAt: new Date().toISOString(), tapes: [{ serial: 1, file: 'jship-000001-0000000000000001-0000000000000003.tar.zst', bytes: 14, sha256: '0'.repeat(64), updates: { firstSeq: '1', lastSeq: '3' }, baseId: null }] }));
    await expect(new DirDestination(dir).open(1, 1n, 1, b)).rejects.toMatchObject({ code: 'TAPE_EXISTS', message: expect.stringContaining(`holds the tapes of group ${a}`) });
    expect(readdirSync(dir).sort()).toEqual(['jship-000001-0000000000000001-0000000000000003.tar.zst', 'jship-manifest.json']);
    await (await new DirDestination(dir).open(2, 4n, 1, a)).abort();
    // Once that group's tapes are gone from it (carried away), the directory is anyone's.
    rmSync(join(dir, 'jship-000001-0000000000000001-0000000000000003.tar.zst'));
    await (await new DirDestination(dir).open(1, 1n, 1, b)).abort();
  });

  it('the same for one named tape file', async () => {
    const dir = next();
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'one.tar.zst');
    const first = await new FileDestination(path).open();
    await expect(new FileDestination(path).open()).rejects.toMatchObject({ code: 'TAPE_EXISTS' });
    await first.abort();
    await (await new FileDestination(path).open()).abort();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('throttled destinations (tape/destination.ts)', () => {
  /** A destination that records the size of each write it gets. */
  const recording = (): { dest: TapeDestination; writes: number[] } => {
    const writes: number[] = [];
    return {
      writes,
      dest: {
        where: 'recording', durable: true, splittable: true,
        open: async () => ({ write: async (c) => { writes.push(c.length); }, commit: async (n) => n, abort: async () => undefined }),
      },
    };
  };

  it('with no limit a chunk goes on whole (a link frame holds a tape frame whole, which the secondary cuts where it lies)', async () => {
    const r = recording();
    const out = await throttled(r.dest, new Throttle(null)).open(1, 1n);
    await out.write(Buffer.alloc(1024 * 1024 + 1000));
    expect(r.writes).toEqual([1024 * 1024 + 1000]);
  });

  it('under a limit a chunk goes in paced pieces of 256 KiB', async () => {
    const r = recording();
    // A rate high enough that the burst lets every piece pass at once: no timer runs.
    const out = await throttled(r.dest, new Throttle(1024 ** 4)).open(1, 1n);
    await out.write(Buffer.alloc(1024 * 1024 + 1000));
    expect(r.writes).toEqual([262144, 262144, 262144, 262144, 1000]);
  });
});

/**
 * A tape file is written back as it is written: an export compresses while
 * the disk writes, and the fsync at commit has at most SYNC_EVERY bytes left
 * (a 343 MiB tape's closing fsync took 0.25 s with nothing to overlap it).
 */
describe('tape files are made durable as they are written (tape/destination.ts)', () => {
  const dirs = scratch();
  afterEach(() => vi.restoreAllMocks());

  const chunk = Buffer.alloc(4 * 1024 * 1024, 0x5a);

  it('a datasync starts once SYNC_EVERY bytes are written, before the commit\'s fsync', async () => {
    const dir = dirs();
    const calls = await recordSyncs(dir);
    const out = await new DirDestination(dir).open(1);
    for (let n = 0; n < SYNC_EVERY + chunk.length; n += chunk.length) await out.write(chunk);
    expect(calls.map((c) => c.op)).toContain('datasync');
    await out.commit('t.tar.zst');
    const ops = calls.map((c) => c.op);
    expect(ops[0]).toBe('datasync');
    expect(ops.indexOf('sync')).toBeGreaterThan(0);
    expect(statSync(join(dir, 't.tar.zst')).size).toBe(SYNC_EVERY + chunk.length);
  });

  it('a background datasync that fails fails the commit: no tape appears and nothing is left', async () => {
    const dir = dirs();
    await failFirstDatasync(dir);
    const out = await new DirDestination(dir).open(1);
    for (let n = 0; n < SYNC_EVERY + chunk.length; n += chunk.length) await out.write(chunk);
    await expect(out.commit('t.tar.zst')).rejects.toThrow(/EIO/);
    await out.abort();
    expect(readdirSync(dir).filter((n) => n !== 'probe')).toEqual([]);
  });
});
