import { closeSync, existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { JournalGroup } from '../../src/journal/journal-group.js';
import type { JshipEvent } from '../../src/core/events.js';
import { jshipJson, makeGroup, MiB, tempDir } from '../helpers.js';

/** Writes into a volume file behind jship's back (a VM image restored from a backup, a file system mounted on it). */
function scribble(path: string): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, randomBytes(4096), 0, 4096, 64 * 1024);
  closeSync(fd);
}

describe('a volume file changed while its group was closed', () => {
  const dir = tempDir();

  it('is seen at the next open and told by status and check until a scan or a full base puts it in the journal', () => {
    const g = makeGroupSync(dir);
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    // Opened and closed cleanly, nothing changed behind its back: nothing to say, however often.
    for (let i = 0; i < 3; i++) expect(jshipJson('status', g).out.outside).toBeNull();
    expect(jshipJson('check', g)).toExit(0);
    // Before, this went unnoticed: the journal (and every secondary) lacked the change for good.
    scribble(a);
    const seen = jshipJson('status', g);
    expect(seen.out.outside).toMatchObject({ volumes: ['a'] });
    // It stays said at every open until it is dealt with, and check fails with what to do.
    expect(jshipJson('status', g).out.outside).toMatchObject({ volumes: ['a'], noticedAt: seen.out.outside.noticedAt });
    const check = jshipJson('check', g);
    expect(check).toExit(1);
    expect(check.out.checks.find((c: { name: string }) => c.name === 'outside')).toMatchObject({ ok: false, message: expect.stringMatching(/volume a changed outside jship .*run jship scan/) });
    expect(check.out.checks.find((c: { name: string }) => c.name === 'outside').message).toContain(`run jship scan ${g} with the volumes quiet`);
    // A first scan only records hashes: it journals nothing, so the note stays; a full base reads the volumes as they are.
    expect(jshipJson('scan', g)).toExit(0);
    expect(jshipJson('status', g).out.outside).toMatchObject({ volumes: ['a'] });
    expect(jshipJson('export', g, '--to', join(dir, 't'), '--base')).toExit(0);
    expect(jshipJson('status', g).out.outside).toBeNull();
    expect(existsSync(groupPaths(g).outside)).toBe(false);
    // Once scanned before, the next scan journals what changed, and that settles it.
    scribble(b);
    expect(jshipJson('status', g).out.outside).toMatchObject({ volumes: ['b'] });
    const scan = jshipJson('scan', g);
    expect(scan).toExit(0);
    expect(scan.out.volumes.find((v: { name: string }) => v.name === 'b').changedBlocks).toBeGreaterThan(0);
    expect(jshipJson('status', g).out.outside).toBeNull();
    expect(jshipJson('check', g)).toExit(0);
  });
});

describe('a damaged outside.json', () => {
  const dir = tempDir();

  it('is refused with the command to run, naming the group\'s directory', () => {
    const g = makeGroupSync(dir);
    writeFileSync(groupPaths(g).outside, '{"volumes": ');
    const r = jshipJson('status', g);
    expect(r).toExit(1);
    expect(r.out.error).toMatchObject({ code: 'OUTSIDE_STATE_DAMAGED', hint: expect.stringContaining(`run jship scan ${g} `) });
  });
});

describe('a volume file written by another process while its group is open', () => {
  const dir = tempDir();

  it('is seen at the next checkpoint when the group wrote nothing there since the one before; the group\'s own writes, batched or not, running or ended, are never taken for it', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB, b: 4 * MiB }, { journalSize: 32 * MiB });
    const events: JshipEvent[] = [];
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0, consumers: [], onEvent: (e) => events.push(e) });
    try {
      await group.checkpoint();
      // The group's own writes, small (batched on the PVOL writer's thread) and large, some still running
      // while the checkpoint looks: nothing to say, round after round.
      for (let round = 0; round < 20; round++) {
        const writes = Array.from({ length: 8 }, (_v, i) => group.write(i % 2 ? 'a' : 'b', ((round * 8 + i) % 60) * 64 * 1024, randomBytes(i % 3 === 0 ? 64 * 1024 : 4096)));
        const cp = group.checkpoint();
        await Promise.all(writes);
        await cp;
        if (round % 4 === 0) await group.checkpoint();
      }
      expect((await group.status()).outside).toBeNull();
      expect(events.filter((e) => e.event === 'changed-outside')).toEqual([]);
      // Before, this went unnoticed for as long as the group stayed open (and at its clean close, for good).
      scribble(join(dir, 'b.img'));
      await group.write('a', 0, randomBytes(4096));
      await group.checkpoint();
      expect((await group.status()).outside).toMatchObject({ volumes: ['b'] });
      // The hint names the group's directory, ready to run.
      expect(events.filter((e) => e.event === 'changed-outside')).toMatchObject([{ volumes: ['b'], hint: expect.stringContaining(`jship scan ${resolve(g)} `) }]);
      // Said once; kept through the close and the next open.
      await group.checkpoint();
      expect(events.filter((e) => e.event === 'changed-outside')).toHaveLength(1);
    } finally {
      await group.close();
    }
    expect(jshipJson('status', g).out.outside).toMatchObject({ volumes: ['b'] });
    expect(jshipJson('check', g)).toExit(1);
  });

  it('is seen by a quiet group too, at its next checkpoint interval (with nothing to checkpoint)', async () => {
    const g = await makeGroup(join(dir, 'quiet'), { a: 1 * MiB }, { journalSize: 8 * MiB });
    let told: (e: JshipEvent) => void = () => undefined;
    const seen = new Promise<JshipEvent>((resolve) => { told = resolve; });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 20, consumers: [], onEvent: (e) => { if (e.event === 'changed-outside') told(e); } });
    try {
      // Looked at once (the first look only remembers), then written behind its back.
      await group.write('a', 0, randomBytes(4096));
      await group.checkpoint();
      scribble(join(dir, 'quiet', 'a.img'));
      expect(await seen).toMatchObject({ volumes: ['a'] });
      expect((await group.status()).outside).toMatchObject({ volumes: ['a'] });
    } finally {
      await group.close();
    }
  });
});

function makeGroupSync(dir: string): string {
  const r = jshipJson('init', join(dir, 'group'), '--volume', `a=${join(dir, 'a.img')}:${MiB}`, '--volume', `b=${join(dir, 'b.img')}:${MiB}`, '--journal-size', '16M');
  expect(r).toExit(0);
  return join(dir, 'group');
}
