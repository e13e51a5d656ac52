import { promises as fsp } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { openSiteGroup } from '../../src/owner/consumers.js';
import { onGroup, whenNoOneShot } from '../../src/owner/on-group.js';
import { controlSocketPath } from '../../src/owner/control-server.js';
import { answerWhileHeld } from '../../src/owner/one-shot-control.js';
import { BIN, MiB, makeGroup, tempDir } from '../helpers.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('waiting for a one-shot command (owner/on-group.ts)', () => {
  const dir = tempDir();

  it('waits through the command\'s way out, its control socket closed and its lock not yet released, and returns once the lock is', async () => {
    // Found by CI: `jship mark` waited for an export, saw its control socket gone while its lock was still
    // held, ran its hooks and failed with GROUP_LOCKED, though the export ended a moment later.
    const g = await makeGroup(dir, { a: MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    let groupOpen = true;
    try {
      const control = await answerWhileHeld(group);
      // Each poll reads the lock file: counted to know that it looked again.
      const opens = vi.spyOn(fsp, 'open');
      const lockReads = (): number => opens.mock.calls.filter(([p]) => String(p).endsWith('/lock')).length;
      let told = 0;
      let returned = false;
      const waited = whenNoOneShot(g, { waitMs: 120_000, onWait: () => { told++; } }).then(() => { returned = true; });
      await vi.waitFor(() => expect(told).toBe(1), { timeout: 60_000, interval: 20 });
      // The command's way out: its control socket first...
      await control.close();
      const seen = lockReads();
      // ...three more looks while the same process still holds the lock: it still waits.
      await vi.waitFor(() => expect(returned || lockReads() >= seen + 3).toBe(true), { timeout: 60_000, interval: 20 });
      expect(returned).toBe(false);
      // ...then its lock: now it returns.
      await group.close();
      groupOpen = false;
      await waited;
      expect(told).toBe(1);
    } finally {
      if (groupOpen) await group.close();
    }
  }, 180_000);

  it('a command waiting for the group (export, ack, scan) waits on when the one-shot command ends its control connection unanswered on its way out', async () => {
    const g = await makeGroup(dir, { a: MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    let groupOpen = true;
    const path = await controlSocketPath(g);
    const rude = createServer((socket) => socket.destroy());
    try {
      const control = await answerWhileHeld(group);
      let told = 0;
      let settled = false;
      const ran = onGroup(g, async () => 'ran here', { op: 'export', args: {} }, { waitMs: 120_000, onWait: () => { told++; } });
      ran.then(() => { settled = true; }, () => { settled = true; });
      await vi.waitFor(() => expect(told).toBe(1), { timeout: 60_000, interval: 20 });
      // Its way out: the control server closes, and a connection made just before is ended without an answer.
      await control.close();
      let accepted = 0;
      rude.on('connection', () => { accepted++; });
      await new Promise<void>((r) => rude.listen(path, r));
      await vi.waitFor(() => expect(settled || accepted >= 3).toBe(true), { timeout: 60_000, interval: 20 });
      expect(settled).toBe(false);
      await new Promise<void>((r) => rude.close(() => r()));
      await group.close();
      groupOpen = false;
      expect(await ran).toBe('ran here');
    } finally {
      rude.close();
      if (groupOpen) await group.close();
    }
  }, 180_000);

  it('jship serve waiting for a one-shot command waits on through the command\'s way out, then serves', async () => {
    const g = await makeGroup(dir, { a: MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    let groupOpen = true;
    const path = await controlSocketPath(g);
    const rude = createServer((socket) => socket.destroy());
    const server = spawn(process.execPath, [BIN, 'serve', g, '--socket', join(dir, 'serve.sock'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const events: Array<{ event?: string; ready?: boolean }> = [];
    createInterface({ input: server.stdout }).on('line', (l) => events.push(JSON.parse(l)));
    let exit: number | null | undefined;
    const exited = new Promise<void>((r) => server.on('close', (c) => { exit = c; r(); }));
    try {
      const control = await answerWhileHeld(group);
      await vi.waitFor(() => expect(exit !== undefined || events.some((e) => e.event === 'waiting-for-group')).toBe(true), { timeout: 60_000, interval: 20 });
      expect(exit).toBeUndefined();
      // The command's way out: its control server closes (a connection made meanwhile ends unanswered), its lock after.
      await control.close();
      let accepted = 0;
      rude.on('connection', () => { accepted++; });
      await new Promise<void>((r) => rude.listen(path, r));
      await vi.waitFor(() => expect(exit !== undefined || accepted >= 2, `accepted ${accepted}, exit ${exit}, ${JSON.stringify(events)}`).toBe(true), { timeout: 20_000, interval: 20 });
      expect(exit).toBeUndefined();
      // Its socket gone too (the same process still holds the lock), then the lock.
      await new Promise<void>((r) => rude.close(() => r()));
      await group.close();
      groupOpen = false;
      await vi.waitFor(() => expect(exit !== undefined || events.some((e) => e.ready === true)).toBe(true), { timeout: 60_000, interval: 20 });
      expect(exit, JSON.stringify(events)).toBeUndefined();
      server.kill('SIGTERM');
      await exited;
      expect(exit).toBe(0);
    } finally {
      server.kill('SIGKILL');
      rude.close();
      if (groupOpen) await group.close();
    }
  }, 180_000);

  it('a process that holds the group and never answered as a one-shot (a library\'s) is not waited for: the command refuses as before', async () => {
    const g = await makeGroup(dir, { a: MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      let told = 0;
      await whenNoOneShot(g, { waitMs: 120_000, onWait: () => { told++; } });
      expect(told).toBe(0);
    } finally {
      await group.close();
    }
  });
});
