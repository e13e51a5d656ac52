import { spawn, spawnSync } from 'node:child_process';
import type { Readable } from 'node:stream';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importTapes } from '../../src/replica/import.js';
import { BIN, jshipAsync, makeGroup, MiB, tempDir } from '../helpers.js';
import { client, serve } from '../nbd/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { JshipError } from '../../src/core/errors.js';
import { callOwner } from '../../src/owner/control-client.js';
import { encodeControl } from '../../src/owner/control-codec.js';
import { absoluteRequest } from '../../src/tape/export-request.js';
import { findTrailer } from '../../src/tape/tape-file.js';

/** Resolves once a line of `stream` matches. */
function lineFrom(stream: Readable, re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      seen += d;
      if (re.test(seen)) resolve();
    });
    stream.on('end', () => reject(new Error(`ended without ${re}: ${seen}`)));
  });
}

describe('exports through the owner', () => {
  const dir = tempDir();

  it('three exports at once on a served group take turns: one serial each, a chain the replica takes whole', async () => {
    const g = await makeGroup(dir, { a: 16 * MiB }, { journalSize: 64 * MiB });
    const s = await serve(g);
    const tapes = join(dir, 'tapes');
    try {
      const uri = s.ready.exports[0]!.uri;
      for (let round = 0; round < 3; round++) {
        client('qemu-io', '-f', 'raw', uri, '-c', `write -P 0x${(round + 1).toString(16).padStart(2, '0')} ${round * 4}M 4M`, '-c', `write -P 0x7${round} 15M 64k`);
        const rs = await Promise.all([0, 1, 2].map(() => jshipAsync('export', g, '--to', `${tapes}/`)));
        for (const r of rs) expect(r).toExit(0);
        expect(rs.filter((r) => !r.out.nothingToExport).length, JSON.stringify(rs.map((r) => r.out))).toBeGreaterThanOrEqual(1);
      }
    } finally {
      expect((await s.stop())).toExit(0);
    }
    const files = readdirSync(tapes).filter((f) => f.endsWith('.tar.zst')).sort();
    const serials = files.map((f) => Number(/^jship-(\d+)-/.exec(f)?.[1]));
    expect(new Set(serials).size, files.join(' ')).toBe(files.length);
    expect(serials).toEqual(serials.map((_, i) => i + 1));
    // The carry manifest is rewritten within each export's turn: none of the concurrent exports' tapes is lost from it.
    expect(JSON.parse(readFileSync(join(tapes, 'jship-manifest.json'), 'utf8')).tapes.map((t: { file: string }) => t.file)).toEqual(files);
    const rep = join(dir, 'rep');
    const r = await importTapes(rep, files.map((f) => join(tapes, f)));
    expect(r.ok, JSON.stringify(r.tapes.map((t) => t.message))).toBe(true);
    expect(r.gaps).toEqual([]);
    expect(r.contiguousThrough).not.toBeNull();
  });

  it('an export waits (--wait) for a group another one-shot command holds on its own (no serve), as it waits for one in a server', async () => {
    // Two cron jobs of a group with no jship serve (a scanned group): the second failed at once with GROUP_LOCKED.
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 16 * MiB });
    const script = `import { openGroup } from ${JSON.stringify(new URL('../../dist/index.js', import.meta.url).href)};
      const g = await openGroup(${JSON.stringify(g)}); await g.write('a', 0, Buffer.alloc(4096, 7)); process.stdout.write('HELD\\n');
      process.stdin.on('data', async () => { await g.close(); process.exit(0); });`;
    const holder = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    await lineFrom(holder.stdout, /HELD/);
    try {
      const tapes = join(dir, 'tapes');
      const brief = spawnSync(process.execPath, [BIN, 'export', g, '--to', `${tapes}/`, '--wait', '1s', '--json'], { encoding: 'utf8' });
      expect(brief).toExit(1);
      expect(JSON.parse(brief.stdout).error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining('still after 1 s'), hint: expect.stringMatching(/one-shot command/) });
      const waiting = spawn(process.execPath, [BIN, 'export', g, '--to', `${tapes}/`, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      waiting.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      await lineFrom(waiting.stderr, /waiting up to 300 s/);
      holder.stdin.write('let go\n');
      const code = await new Promise((r) => waiting.on('close', r));
      expect(code, out).toBe(0);
      expect(JSON.parse(out).tapes).toHaveLength(1);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('an export to a directory that cannot be made fails at once, alone and through serve, and serve still stops', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 8 * MiB });
    const group = await openSiteGroup(g);
    await group.write('a', 0, Buffer.alloc(4096, 1));
    await group.close();
    const alone = spawnSync(process.execPath, [BIN, 'export', g, '--to', '/proc/x/', '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(alone).toExit(2);
    expect(JSON.parse(alone.stdout).error.message).toMatch(/cannot create directory \/proc\/x/);
    const s = await serve(g);
    try {
      client('qemu-io', '-f', 'raw', s.ready.exports[0]!.uri, '-c', 'write -P 0x01 0 64k');
      const r = await jshipAsync('export', g, '--to', '/proc/x/');
      expect(r).toExit(2);
      expect(r.out.error.message).toMatch(/cannot create directory \/proc\/x/);
    } finally {
      expect((await s.stop())).toExit(0);
    }
  });
  it('what an export answers through the owner stays small however many segments it wrote: a big export is never lost to an oversize control line', async () => {
    const g = await makeGroup(dir, { a: 48 * MiB }, { journalSize: 128 * MiB });
    const s = await serve(g);
    const tapes = join(dir, 'many-segments');
    try {
      // 40 MiB of records: about 20 segments of 2 MiB, each of which the tape's trailer lists.
      client('qemu-io', '-f', 'raw', s.ready.exports[0]!.uri, ...Array.from({ length: 40 }, (_, i) => ['-c', `write -P 0x${(i + 1).toString(16).padStart(2, '0')} ${i}M 1M`]).flat());
      const locked = new JshipError('GROUP_LOCKED', 'not served');
      const answer = await callOwner(g, 'export', { ...absoluteRequest({ to: `${tapes}/` }) }, locked) as { tapes: Array<Record<string, unknown>>; records: number };
      expect(answer.records).toBe(40);
      expect(answer.tapes).toHaveLength(1);
      const tape = answer.tapes[0]!;
      expect(Object.keys(tape).sort()).toEqual(['base', 'bytes', 'location', 'name', 'records', 'serial', 'sha256', 'updates']);
      expect(encodeControl({ type: 'result', result: answer }).length).toBeLessThan(2048);
    } finally {
      expect((await s.stop())).toExit(0);
    }
    const [file] = readdirSync(tapes).filter((f) => f.endsWith('.tar.zst'));
    expect((await findTrailer(join(tapes, file!)))?.segments.length).toBeGreaterThanOrEqual(15);
  });
});
