import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { BIN, MiB, makeGroup, tempDir } from '../helpers.js';
import { client, serve } from '../nbd/helpers.js';
import { linkProc, until } from './helpers.js';

describe('a pulling secondary shares its replica', () => {
  const dir = tempDir();

  // The receiver lets go of the replica between two tapes when it applies them, and holds it from tape to
  // tape when it does not: either way, a restore that asks gets it between two tapes, however fast they come.
  it.each([
    { mode: '--apply', stored: 'applied', rounds: 8 },
    { mode: 'without --apply', stored: 'tape-stored', rounds: 4 },
  ])('restores run while link pull $mode stores tapes back to back (they wait for it, never GROUP_LOCKED); leftovers of a killed receiver go at its start', async ({ mode, stored, rounds }) => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 32 * MiB });
    const key = groupPaths(g).linkKey;
    const srv = await serve(g, '--link-listen', '127.0.0.1:0');
    const rep = join(dir, `rep-${stored}`);
    const uri = srv.ready.exports[0]!.uri;
    client('qemu-io', '-f', 'raw', uri, '-c', 'write -P 0x01 0 1M');
    // A receiver killed mid-tape left this (the replica is created by the first pull).
    const first = spawnSync(process.execPath, [BIN, 'link', 'pull', rep, '--from', (srv.ready as any).link, '--psk', key, '--name', 'site-b', '--once', '--json'], { encoding: 'utf8' });
    expect(first.status, first.stderr).toBe(0);
    writeFileSync(join(rep, 'tapes', '.incoming-0123456789ab'), 'half a tape');
    const pull = await linkProc('pull', rep, '--from', (srv.ready as any).link, '--psk', key, '--name', 'site-b', ...(mode === '--apply' ? ['--apply'] : []));
    try {
      await until('the receiver to start', () => pull.events.some((e) => e.event === 'connected'));
      expect(readdirSync(join(rep, 'tapes')).filter((n) => n.startsWith('.incoming-'))).toEqual([]);
      // Writes keep arriving (rate-limited fio): the receiver stores (and applies) tapes all along.
      const fio = spawn('fio', ['--name=load', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=4',
        '--size=4M', '--rate_iops=300', '--time_based', '--runtime=600'], { stdio: 'ignore' });
      const fioDone = new Promise((r) => fio.once('close', r));
      try {
        const count = (): number => pull.events.filter((e) => e.event === stored).length;
        for (let i = 0; i < rounds; i++) {
          const before = count();
          await until(`the next ${stored}`, () => count() > before, 60_000);
          const r = spawnSync(process.execPath, [BIN, 'restore', rep, '--target', join(dir, `x-${stored}-${i}/`), '--json'], { encoding: 'utf8', timeout: 60_000 });
          expect(r.status, `restore ${i}: ${r.stdout} ${r.stderr}`).toBe(0);
        }
      } finally {
        fio.kill('SIGTERM');
        await fioDone;
      }
    } finally {
      // Soft: a failure above is reported, not hidden behind these.
      expect.soft(await pull.stop()).toBe(0);
      expect.soft((await srv.stop()).code).toBe(0);
    }
  });
});
