import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isJshipError } from '../../src/core/errors.js';
import { readChainState } from '../../src/tape/chain-state.js';
import { DirDestination, FileDestination } from '../../src/tape/destination.js';
import { exportGroup } from '../../src/tape/export.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { BIN, jshipJson, tempDir } from '../helpers.js';
import { groupWithData } from './helpers.js';

describe('export --verify-after-write', () => {
  const dir = tempDir();

  it('a tape altered between its write and its read-back is caught: not in place, not counted, nothing purged; the rerun writes it whole', async () => {
    const { g, group } = await groupWithData(join(dir, 'lib'), 200);
    const out = join(dir, 'lib-tapes');
    const before = await readChainState(g);
    const outSeq = group.journal.outSeq;
    const alterations: Array<[string, (path: string) => void]> = [
      ['a flipped byte', (p) => {
        const b = readFileSync(p);
        b[Math.floor(b.length / 2)] = (b[Math.floor(b.length / 2)] as number) ^ 0x01;
        writeFileSync(p, b);
      }],
      ['a cut end', (p) => truncateSync(p, readFileSync(p).length - 700)],
    ];
    for (const [what, alter] of alterations) {
      let seen: string | undefined;
      const err = await exportGroup(group, {
        destination: new DirDestination(out, { verifyAfterWrite: true, beforeReadBack: async (p) => { seen = p; alter(p); } }),
      }).catch((e: unknown) => e);
      expect(isJshipError(err, 'TAPE_VERIFY_FAILED'), `${what}: ${String(err)}`).toBe(true);
      expect((err as Error).message).toMatch(/did not read back as written/);
      expect(seen).toMatch(/\.jship-000001\.partial$/);
      expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
      expect(await readChainState(g)).toEqual(before);
      expect(group.journal.outSeq).toBe(outSeq);
    }
    const r = await exportGroup(group, { destination: new DirDestination(out, { verifyAfterWrite: true }) });
    expect(r.tapes).toHaveLength(1);
    expect(r.journalOut).toBeGreaterThan(outSeq);
    const [v] = await verifyTapes([r.tapes[0]!.location]);
    expect(v!.ok).toBe(true);
    expect(v!.sha256).toBe(r.tapes[0]!.sha256);
    // A named file too.
    const file = join(dir, 'one.tar.zst');
    const err = await exportGroup(group, { allowEmpty: true, destination: new FileDestination(file, { verifyAfterWrite: true, beforeReadBack: async (p) => writeFileSync(p, Buffer.alloc(4096)) }) }).catch((e: unknown) => e);
    expect(isJshipError(err, 'TAPE_VERIFY_FAILED')).toBe(true);
    expect(existsSync(file)).toBe(false);
    await group.close();
  });

  it('the CLI drops the tape\'s pages from the cache before reading it back (strace), says so, and refuses destinations it cannot read back', async () => {
    const { g, group } = await groupWithData(join(dir, 'cli'), 100);
    await group.close();
    const out = join(dir, 'cli-tapes');
    const trace = join(dir, 'fadvise');
    const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=fadvise64', '-o', trace, process.execPath, BIN, 'export', g, '--to', `${out}/`, '--verify-after-write', '--json'], { encoding: 'utf8' });
    expect(r).toExit(0);
    const json = JSON.parse(r.stdout);
    expect(json.verifiedAfterWrite).toBe(true);
    expect(readFileSync(trace, 'utf8')).toMatch(/fadvise64\(0, 0, 0, POSIX_FADV_DONTNEED\) = 0/);
    const text = spawnSync(BIN, ['export', g, '--to', `${out}/`, '--verify-after-write', '--allow-empty'], { encoding: 'utf8' });
    expect(text).toExit(0);
    expect(text.stdout).toContain('each tape was read back from the medium');
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo])).toExit(0);
    for (const to of ['-', fifo]) {
      const bad = jshipJson('export', g, '--to', to, '--verify-after-write');
      expect(bad.code, to).toBe(2);
      expect(bad.out.error.message).toMatch(/--verify-after-write reads tapes back from files and directories/);
    }
  });
});
