import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { JshipError } from '../../src/core/errors.js';
import { scanGroup } from '../../src/journal/scan.js';
import { callOwner } from '../../src/owner/control-client.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { answerWhileHeld } from '../../src/owner/one-shot-control.js';
import { BIN, jshipAsync, jshipProc, makeGroup, MiB, tempDir } from '../helpers.js';

/** Waits (polling, with room to spare on a loaded machine) until the group's lock names `pid`. */
async function heldBy(group: string, pid: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = (() => {
      try {
        return readFileSync(join(group, 'lock'), 'utf8');
      } catch {
        return '';
      }
    })();
    if (text !== '' && (JSON.parse(text) as { pid: number }).pid === pid) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} never took the lock of ${group}`);
    await sleep(20);
  }
}

/**
 * A site without jship serve (a scanned group, exports from cron): while a
 * one-shot export held the group, `jship check` failed with GROUP_LOCKED,
 * exit 1 — a false alarm from monitoring every night, for as long as the
 * export ran. The command that holds the group answers status now.
 */
describe('a group a one-shot command holds', () => {
  const dir = tempDir();

  it('answers check and status through that command; mark waits for it before any hook, serve waits to serve, a second server is refused', async () => {
    const g = await makeGroup(dir, { a: 8 * MiB }, { journalSize: 32 * MiB });
    const write = async (): Promise<void> => {
      const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
      await group.write('a', 0, randomBytes(4 * MiB));
      await group.close();
    };
    await write();
    expect((await jshipAsync('export', g, '--to', `${join(dir, 'tapes')}/`, '--base'))).toExit(0);
    await write();
    // The export writes its tape to a pipe nobody reads yet: it holds the group until the pipe is read.
    const exporter = spawn(process.execPath, [BIN, 'export', g, '--to', '-', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => exporter.on('close', r));
    try {
      await heldBy(g, exporter.pid!);
      const check = await jshipAsync('check', g, '--max-rpo', '100d', '--max-usage', '90');
      expect(check).toExit(0);
      expect(check.out.ok).toBe(true);
      expect(check.out.checks.map((c: { name: string }) => c.name)).toEqual(['state', 'rpo tapes', 'usage']);
      const status = await jshipAsync('status', g);
      expect(status).toExit(0);
      expect(status.out.consumers.map((c: { name: string }) => c.name)).toEqual(['tapes']);
      expect(status.out.consumers[0].behind.records).not.toBe('0');
      // A command that changes the group waits for the export to end (mark failed at once), and runs no hook
      // meanwhile: a before-hook that froze a file system would have kept it frozen behind the export.
      const hooks = join(dir, 'hooks.log');
      const hookArgs = ['--exec-before', `echo before >> ${hooks}`, '--exec-after', `echo after >> ${hooks}`];
      const brief = await jshipAsync('mark', g, 'brief', '--wait', '1s', ...hookArgs);
      expect(brief).toExit(1);
      expect(brief.out.error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining('still after 1 s'), details: { pid: exporter.pid, oneShot: true } });
      expect(existsSync(hooks)).toBe(false);
      // So does a scan (it failed at once).
      const scan = await jshipAsync('scan', g, '--wait', '1s');
      expect(scan).toExit(1);
      expect(scan.out.error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining('still after 1 s') });
      const marker = spawn(process.execPath, [BIN, 'mark', g, 'during-export', ...hookArgs, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let markOut = '';
      marker.stdout.setEncoding('utf8').on('data', (d: string) => { markOut += d; });
      const marked = new Promise<number | null>((r) => marker.on('close', r));
      onTestFinished(() => {
        marker.kill('SIGKILL');
      });
      await new Promise<void>((resolve, reject) => {
        let err = '';
        marker.stderr.setEncoding('utf8').on('data', (d: string) => {
          err += d;
          if (/waiting up to 300 s/.test(err)) resolve();
        });
        void marked.then((c) => reject(new Error(`mark exited ${c} without waiting: ${err}`)));
      });
      expect(existsSync(hooks)).toBe(false);
      // A server started meanwhile waits for the export, and says so (it failed: a service manager restarting
      // it every few seconds gave up before a long export ended).
      const server = spawn(process.execPath, [BIN, 'serve', g, '--socket', join(dir, 'nbd.sock'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const served = new Promise<number | null>((r) => server.on('close', r));
      type Event = { event?: string; ready?: boolean };
      const events: Event[] = [];
      const waiters: Array<() => void> = [];
      createInterface({ input: server.stdout }).on('line', (l) => {
        events.push(JSON.parse(l));
        for (const w of waiters) w();
      });
      /** Resolves once serve has printed an event `want` takes (checked as each line comes). */
      const seen = (want: (e: Event) => boolean): Promise<void> => new Promise((resolve, reject) => {
        const look = (): void => {
          if (events.some(want)) resolve();
        };
        waiters.push(look);
        look();
        void served.then((c) => reject(new Error(`serve exited ${c}: ${JSON.stringify(events)}`)));
      });
      try {
        await seen((e) => e.event === 'waiting-for-group');
        // Still the export's: nothing above took the group from it.
        await heldBy(g, exporter.pid!);
        exporter.stdout.resume();
        expect(await exited).toBe(0);
        // The mark went on once the export had ended (through the server, or before it started).
        expect(await marked, markOut).toBe(0);
        expect(JSON.parse(markOut).name).toBe('during-export');
        expect(readFileSync(hooks, 'utf8')).toBe('before\nafter\n');
        await seen((e) => e.ready === true);
        server.kill('SIGTERM');
        expect(await served).toBe(0);
      } finally {
        server.kill('SIGKILL');
      }
    } finally {
      exporter.kill('SIGKILL');
    }
    // Released: the group is free, and its control socket gone with the command.
    const after = await jshipAsync('check', g);
    expect(after).toExit(0);
    expect(() => readFileSync(join(g, 'control.sock'))).toThrow(/ENOENT/);
    // A second server is told that one serves the group already, and where.
    const first = await jshipProc('serve', g, '--socket', join(dir, 'nbd.sock'));
    try {
      const second = await jshipAsync('serve', g, '--socket', join(dir, 'nbd2.sock'));
      expect(second).toExit(1);
      expect(second.out.error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining(`a server of the group, on ${join(dir, 'nbd.sock')}`), hint: expect.stringMatching(/one server per group/) });
    } finally {
      expect(await first.stop()).toBe(0);
    }
  });
});

describe('a one-shot command that cannot make its control socket', () => {
  const dir = tempDir();

  it('goes on without it (a file system without Unix sockets): only monitoring is refused, as before', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    // Something that is not a socket, and cannot be removed as one, where the socket goes.
    mkdirSync(join(g, 'control.sock', 'x'), { recursive: true });
    const r = await jshipAsync('export', g, '--to', `${join(dir, 'tapes')}/`, '--base');
    expect(r).toExit(0);
    expect(r.out.tapes).toHaveLength(1);
  });
});

describe('a scan', () => {
  const dir = tempDir();

  it('answers status for its group while it scans, and stops answering when done', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const locked = new JshipError('GROUP_LOCKED', 'held');
    let during: unknown;
    await scanGroup(g, {
      whileHeld: async (group) => {
        const answering = await answerWhileHeld(group);
        during = await callOwner(g, 'status', {}, locked);
        await expect(callOwner(g, 'mark', { name: 'm' }, locked)).rejects.toMatchObject({ code: 'GROUP_LOCKED', message: 'held', details: { oneShot: true } });
        return answering;
      },
    });
    expect(during).toMatchObject({ status: { dir: g }, consumers: [{ name: 'tapes' }], serve: null });
    expect(() => readFileSync(join(g, 'control.sock'))).toThrow(/ENOENT/);
  });
});
