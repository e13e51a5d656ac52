import { promises as fsp } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';

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

  /** A group held in this process as a one-shot command holds it: its lock, and its control socket answering status. */
  async function heldByOneShot(): Promise<{ g: string; control: { close(): Promise<void> }; release: () => Promise<void> }> {
    const g = await makeGroup(dir, { a: MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    let open = true;
    const release = async (): Promise<void> => {
      if (open) await group.close();
      open = false;
    };
    onTestFinished(release);
    return { g, control: await answerWhileHeld(group), release };
  }

  /**
   * The command's way out, in the moment between its control socket and its
   * lock: the control server closed, and in its place one that ends every
   * connection unanswered (as one made in that moment is).
   */
  async function unanswered(g: string, control: { close(): Promise<void> }): Promise<{ accepted: () => number; close: () => Promise<void> }> {
    await control.close();
    let n = 0;
    const rude = createServer((socket) => {
      n++;
      socket.destroy();
    });
    const path = await controlSocketPath(g);
    await new Promise<void>((r) => rude.listen(path, r));
    const close = (): Promise<void> => new Promise((r) => (rude.listening ? rude.close(() => r()) : r()));
    onTestFinished(close);
    return { accepted: () => n, close };
  }

  it('waits through the command\'s way out, its control socket closed and its lock not yet released, and returns once the lock is', async () => {
    // Found by CI: `jship mark` waited for an export, saw its control socket gone while its lock was still
    // held, ran its hooks and failed with GROUP_LOCKED, though the export ended a moment later.
    const { g, control, release } = await heldByOneShot();
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
    await release();
    await waited;
    expect(told).toBe(1);
  }, 180_000);

  it('a command waiting for the group (export, ack, scan) waits on when the one-shot command ends its control connection unanswered on its way out', async () => {
    const { g, control, release } = await heldByOneShot();
    let told = 0;
    let settled = false;
    const ran = onGroup(g, async () => 'ran here', { op: 'export', args: {} }, { waitMs: 120_000, onWait: () => { told++; } });
    ran.then(() => { settled = true; }, () => { settled = true; });
    await vi.waitFor(() => expect(told).toBe(1), { timeout: 60_000, interval: 20 });
    const rude = await unanswered(g, control);
    await vi.waitFor(() => expect(settled || rude.accepted() >= 3).toBe(true), { timeout: 60_000, interval: 20 });
    expect(settled).toBe(false);
    await rude.close();
    await release();
    expect(await ran).toBe('ran here');
  }, 180_000);

  it('jship serve waiting for a one-shot command waits on through the command\'s way out, then serves', async () => {
    const { g, control, release } = await heldByOneShot();
    const server = spawn(process.execPath, [BIN, 'serve', g, '--socket', join(dir, 'serve.sock'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    onTestFinished(() => { server.kill('SIGKILL'); });
    const events: Array<{ event?: string; ready?: boolean }> = [];
    createInterface({ input: server.stdout }).on('line', (l) => events.push(JSON.parse(l)));
    let exit: number | null | undefined;
    const exited = new Promise<void>((r) => server.on('close', (c) => { exit = c; r(); }));
    await vi.waitFor(() => expect(exit !== undefined || events.some((e) => e.event === 'waiting-for-group')).toBe(true), { timeout: 60_000, interval: 20 });
    expect(exit).toBeUndefined();
    const rude = await unanswered(g, control);
    await vi.waitFor(() => expect(exit !== undefined || rude.accepted() >= 2).toBe(true), { timeout: 60_000, interval: 20 });
    expect(exit).toBeUndefined();
    // Its socket gone too (the same process still holds the lock), then the lock.
    await rude.close();
    await release();
    await vi.waitFor(() => expect(exit !== undefined || events.some((e) => e.ready === true)).toBe(true), { timeout: 60_000, interval: 20 });
    expect(exit, JSON.stringify(events)).toBeUndefined();
    server.kill('SIGTERM');
    await exited;
    expect(exit).toBe(0);
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
