import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { jshipJson, MiB, tempDir } from '../helpers.js';

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

function makeGroupSync(dir: string): string {
  const r = jshipJson('init', join(dir, 'group'), '--volume', `a=${join(dir, 'a.img')}:${MiB}`, '--volume', `b=${join(dir, 'b.img')}:${MiB}`, '--journal-size', '16M');
  expect(r).toExit(0);
  return join(dir, 'group');
}
