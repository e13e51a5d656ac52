import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHostPort } from '../../src/io/sockets.js';
import { LinkPrimary } from '../../src/link/link-primary.js';
import { runPull } from '../../src/link/link-secondary.js';
import { Cmd } from '../../src/nbd/protocol.js';
import { BIN, KiB, MiB, jshipJson, jshipProc, mountTmpfs, tempDir, unmount } from '../helpers.js';
import { events, linkedGroup } from '../link/helpers.js';
import { Raw, client, req } from '../nbd/helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';

const hashes = (rep: string): string => spawnSync('sh', ['-c', `cd ${rep} && sha256sum tapes/* svol/* catalog.db replica.json 2>/dev/null`], { encoding: 'utf8' }).stdout;
const socketPath = (uri: string): string => decodeURIComponent(/socket=(.*)$/.exec(uri)![1]!);

describe('a mount beside imports, link pulls, restores and expire', () => {
  const dir = tempDir();

  it('imports, a link pull and an SVOL restore run while a point is mounted; the mounted bytes do not change; expire refuses to remove its tapes until it stops (or is killed)', async () => {
    const { group, key } = await linkedGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 32 * MiB, chunkSize: 64 * KiB });
    const tapes = join(dir, 'tapes');
    const rep = join(dir, 'rep');
    const primary = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: 0 }, key, log: events().log });
    // Killed whatever happens (an assertion failing midway leaves no mount running).
    const running: Array<Awaited<ReturnType<typeof jshipProc>>> = [];
    try {
      await writeMixed(group, 60, 1);
      await exportTo(group, tapes, { base: true, keepUntilAck: true });
      await writeMixed(group, 40, 2);
      await group.mark('m1');
      await exportTo(group, tapes, { keepUntilAck: true });
      expect(jshipJson('import', rep, tapes)).toExit(0);

      const m1 = await jshipProc('mount', rep, '--marker', 'm1', '--socket', join(dir, 'm1.sock'));
      running.push(m1);
      const uri = m1.ready.exports.find((x: { name: string }) => x.name === 'a').uri as string;
      const before = join(dir, 'm1-a.img');
      client('nbdcopy', uri, before);
      // The replica moves on under the mount: new tapes (a second base too), a link pull, an SVOL restore.
      await writeMixed(group, 80, 3);
      await exportTo(group, tapes, { keepUntilAck: true });
      await runPull({ replicaDir: rep, name: 'b', key, log: events().log, from: parseHostPort(primary.address as string, '--from'), once: true });
      await exportTo(group, tapes, { base: true, keepUntilAck: true });
      await writeMixed(group, 20, 4);
      await exportTo(group, tapes, { keepUntilAck: true });
      const imp = jshipJson('import', rep, tapes);
      expect(imp).toExit(0);
      expect(jshipJson('restore', rep)).toExit(0);
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', before, uri);
      // A second mount of the newest point at the same time.
      const latest = await jshipProc('mount', rep, '--socket', join(dir, 'latest.sock'));
      running.push(latest);
      expect(BigInt(latest.ready.seq)).toBeGreaterThan(BigInt(m1.ready.seq));
      expect(readdirSync(join(rep, 'mounts'))).toHaveLength(2);

      // Two complete bases: keeping the last one would remove the first tapes, which the mount of m1 reads.
      const tapesBefore = readdirSync(join(rep, 'tapes')).sort();
      const refused = jshipJson('expire', rep, '--keep-last', '1', '--confirm');
      expect(refused).toExit(1);
      expect(refused.out.error.code).toBe('REPLICA_IN_USE');
      expect(refused.out.error.message).toMatch(new RegExp(`the mount of marker "m1" \\(seq ${m1.ready.seq}\\) \\(pid ${m1.ready.pid} `));
      expect(refused.out.error.hint).toMatch(/stop that mount/);
      expect(readdirSync(join(rep, 'tapes')).sort()).toEqual(tapesBefore);
      // The dry run still says what would go.
      expect(jshipJson('expire', rep, '--keep-last', '1').out.remove.length).toBeGreaterThan(0);
      client('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', before, uri);
      // Killed, its pin holds nothing: expire goes ahead and clears it.
      await m1.kill();
      const done = jshipJson('expire', rep, '--keep-last', '1', '--confirm');
      expect(done).toExit(0);
      expect(done.out.removed).toBe(true);
      expect(readdirSync(join(rep, 'mounts'))).toHaveLength(1);
      expect(await latest.stop()).toBe(0);
      expect(readdirSync(join(rep, 'mounts'))).toEqual([]);
    } finally {
      for (const p of running) await p.kill();
      await primary.stop();
      await group.close();
    }
  }, 180_000);

  it('jship drill: a passing and a failing and a timed-out drill, each recorded; timeline shows the tested points; check --max-drill-age; the replica is unchanged', async () => {
    const { g, group } = await linkedGroup(join(dir, 'd'), { a: 1 * MiB, 'b-2': 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    const tapes = join(dir, 'd-tapes');
    const rep = join(dir, 'd-rep');
    try {
      await writeMixed(group, 50, 5);
      await exportTo(group, tapes, { base: true });
      await writeMixed(group, 20, 6);
      await group.mark('good');
    } finally {
      await group.close();
    }
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);
    expect(jshipJson('import', rep, tapes)).toExit(0);
    expect(jshipJson('restore', rep)).toExit(0);
    const expected = join(rep, 'svol', 'a.img');
    const unchanged = hashes(rep);
    const noDrill = jshipJson('check', rep, '--max-drill-age', '1h');
    expect(noDrill).toExit(1);
    expect(noDrill.out.checks.find((c: { name: string }) => c.name === 'drill').message).toMatch(/no drill has passed/);

    // Passes: the point equals the restored SVOL; a write goes to the throw-away layer; the exports file lists both volumes.
    const check = `qemu-img compare -f raw -F raw ${expected} "$JSHIP_NBD_URI_A" && qemu-io -f raw "$JSHIP_NBD_URI_A" -c "write -P 0x33 0 64k" -c "read -P 0x33 0 64k" | grep -q "read 65536" && test -n "$JSHIP_NBD_URI_B_2" && grep -q '"b-2"' "$JSHIP_NBD_EXPORTS" && test "$JSHIP_DRILL_POINT" = 'marker "good" (seq '"$JSHIP_DRILL_SEQ"')'`;
    const ok = jshipJson('drill', rep, '--marker', 'good', '--exec', check);
    expect(ok).toExit(0);
    expect(ok.out).toMatchObject({ ok: true, code: 0, point: expect.stringMatching(/^marker "good"/), volumes: ['a', 'b-2'] });
    expect(ok.out.exports.map((x: { env: string }) => x.env)).toEqual(['JSHIP_NBD_URI_A', 'JSHIP_NBD_URI_B_2']);
    expect(JSON.parse(readFileSync(ok.out.recorded, 'utf8'))).toMatchObject({ ok: true, command: check });
    // Fails: exit status and output recorded, exit 1.
    const bad = jshipJson('drill', rep, '--exec', 'echo "fsck: 3 errors" >&2; exit 3');
    expect(bad).toExit(1);
    expect(bad.out).toMatchObject({ ok: false, code: 3, output: 'fsck: 3 errors' });
    // Runs over its time: stopped (its whole process group), failed.
    const slow = jshipJson('drill', rep, '--seq', ok.out.seq, '--timeout', '1s', '--exec', 'sleep 60');
    expect(slow).toExit(1);
    expect(slow.out).toMatchObject({ ok: false, timedOut: true });
    expect(slow.out.durationMs).toBeLessThan(50_000);
    expect(hashes(rep)).toBe(unchanged);
    expect(readdirSync(join(rep, 'scratch'))).toEqual([]);
    expect(readdirSync(join(rep, 'mounts'))).toEqual([]);

    const t = jshipJson('timeline', rep);
    expect(t.out.drills.map((d: { ok: boolean }) => d.ok)).toEqual([true, false, false]);
    const human = spawnSync(process.execPath, [BIN, 'timeline', rep], { encoding: 'utf8' }).stdout;
    expect(human).toMatch(/✗ drill/);
    expect(human).toMatch(/drills \(tested points\):\n {2}seq \d+ .* passed .*\n {2}seq \d+ .* FAILED/);
    const fresh = jshipJson('check', rep, '--max-drill-age', '1h');
    expect(fresh).toExit(0);
    expect(fresh.out.checks.find((c: { name: string }) => c.name === 'drill').message).toMatch(/last passed drill .* ago \(at most 60\.0 min\); the last drill .* FAILED/);
    // Usage errors: no command, a bad timeout, a volume the replica does not have.
    expect(spawnSync(process.execPath, [BIN, 'drill', rep], { encoding: 'utf8' })).toExit(2);
    expect(jshipJson('drill', rep, '--exec', 'true', '--timeout', 'soon')).toExit(2);
    expect(jshipJson('drill', rep, '--exec', 'true', '--volume', 'nope').out.error.message).toMatch(/no volume "nope"/);
  }, 120_000);

  it('bad input: a scratch directory that fills (the client gets ENOSPC, reads go on, nothing else harmed); a client that leaves mid-read', async () => {
    const { g, group } = await linkedGroup(join(dir, 'x'), { a: 4 * MiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
    try {
      for (let i = 0; i < 32; i++) await group.write('a', i * 128 * KiB, randomBytes(64 * KiB));
    } finally {
      await group.close();
    }
    const rep = join(dir, 'x-rep');
    expect(jshipJson('export', g, '--to', `${join(dir, 'x-tapes')}/`, '--base')).toExit(0);
    expect(jshipJson('import', rep, join(dir, 'x-tapes'))).toExit(0);
    const unchanged = hashes(rep);
    const full = join(dir, 'full');
    mountTmpfs(full, '256k');
    try {
      const srv = await jshipProc('mount', rep, '--writable', '--scratch', full, '--socket', join(dir, 'x.sock'));
      try {
        const uri = srv.ready.exports[0].uri as string;
        const w = spawnSync('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x44 0 2M'], { encoding: 'utf8' });
        expect(`${w.stdout}${w.stderr}`).toMatch(/No space left on device/);
        // The point's bytes beyond the failed write read as they are.
        const img = readFileSync(join(dir, 'x', 'a.img'));
        const tail = client('sh', '-c', `nbdcopy '${uri}' - | tail -c 1048576 | sha256sum`).split(' ')[0];
        expect(tail).toBe(createHash('sha256').update(img.subarray(3 * MiB)).digest('hex'));
        // A client asks for 32 MiB and goes away before the reply; the next one is served.
        const raw = new Raw(socketPath(uri));
        await raw.handshake('a');
        raw.send(req(Cmd.READ, 1n, 0, 4 * MiB));
        raw.socket.destroy();
        expect(client('nbdinfo', uri)).toMatch(/export-size: 4194304/);
      } finally {
        expect(await srv.stop()).toBe(0);
      }
    } finally {
      unmount(full);
    }
    expect(hashes(rep)).toBe(unchanged);
  }, 120_000);
});
