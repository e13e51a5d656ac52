import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Cmd } from '../../src/nbd/protocol.js';
import { MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { until } from '../link/helpers.js';
import { Raw, journalReproducesVolumes, req, serve } from '../nbd/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

describe('serve stops within --stop-timeout', () => {
  const dir = tempDir();

  it('a client that never reads its replies cannot hold a stop: busy connections are closed, the group is flushed and closed clean', async () => {
    const g = await makeGroup(dir, { a: 64 * MiB }, { journalSize: 32 * MiB });
    const s = await serve(g, '--stop-timeout', '2s');
    const stuck = new Raw(s.ready.listening);
    await stuck.handshake();
    // 64 reads of 1 MiB, and then the client stops reading: the replies fill the socket and stay there.
    stuck.socket.pause();
    for (let i = 0; i < 64; i++) stuck.send(req(Cmd.READ, BigInt(i), i * MiB, MiB));
    // One write that is answered, so that a clean close has something to flush.
    const good = new Raw(s.ready.listening);
    await good.handshake();
    good.send(req(Cmd.WRITE, 1n, 0, 4096), Buffer.alloc(4096, 7));
    expect((await good.simpleReply()).error).toBe(0);
    const stopped = s.stop();
    // A bounded wait for the exit (the old server waited for the stuck client forever).
    const code = await Promise.race([stopped, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 45_000))]);
    expect(code, s.log()).not.toBe('hung');
    const { code: exit, out } = code as { code: number | null; out: any };
    expect(exit).toBe(0);
    expect(out.forced).toBe(true);
    expect(out.connectionsClosed).toBeGreaterThanOrEqual(1);
    expect(s.log()).toMatch(/ stop-requested signal=SIGTERM /);
    expect(s.log()).toMatch(/ stop-forced afterSeconds=\S+ nbdClosed=[1-9]\d* controlClosed=\d+ /);
    stuck.socket.destroy();
    good.socket.destroy();
    // The next open finds a cleanly closed group with the acknowledged write.
    const group = await openSiteGroup(g);
    try {
      expect((await group.read('a', 0, 4096)).every((b) => b === 7)).toBe(true);
    } finally {
      await group.close();
    }
  });

  for (const load of [
    { name: '4 KiB random writes, qd 32 × 2 jobs', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', '--numjobs=2'] },
    { name: '1 MiB sequential writes, qd 8', args: ['--rw=write', '--bs=1M', '--iodepth=8'] },
  ]) {
    it(`SIGTERM under fio (${load.name}) ends well inside the timeout, with every acknowledged write journaled`, async () => {
      const g = await makeGroup(dir, { a: 64 * MiB }, { journalSize: 128 * MiB });
      const s = await serve(g, '--stop-timeout', '20s');
      const fio = spawn('fio', ['--name=load', '--ioengine=nbd', `--uri=${s.ready.exports[0]!.uri}`, ...load.args, '--size=64M', '--time_based', '--runtime=120'], { stdio: 'ignore' });
      const fioDone = new Promise((r) => fio.once('close', r));
      try {
        // Under way: records are in the journal (asked of the server itself).
        await until('fio to write', () => Number(jshipJson('status', g).out?.sequence?.last ?? 0) > 20, 60_000);
        const stopped = await s.stop();
        expect(stopped).toExit(0);
        expect(stopped.out.forced, s.log()).toBe(false);
      } finally {
        fio.kill('SIGKILL');
        await fioDone;
      }
      // The next open finds the group closed clean, and the PVOL is exactly the journal's replay.
      expect((await journalReproducesVolumes(g)).ok).toBe(true);
    });
  }
});
