import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { readKeyFile } from '../../src/tape/crypto.js';
import { MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';

/** A key rotation as an operator does it: tapes under k1, then under k2, one replica, restores across the change. */
describe('key rings', () => {
  const dir = tempDir();

  it('tapes under k1 then k2 (no new base): import, verify and restore with both keys (--key twice or --key-dir); one key missing is named by its id', async () => {
    const g = await makeGroup(dir, { a: 2 * MiB }, { journalSize: 8 * MiB });
    const keys = join(dir, 'keys');
    mkdirSync(keys);
    const k1 = join(keys, 'k1.key');
    const k2 = join(keys, 'k2.key');
    writeFileSync(k1, `${randomBytes(32).toString('hex')}\n`);
    writeFileSync(k2, randomBytes(32));
    const id1 = (await readKeyFile(k1)).keyId;
    const id2 = (await readKeyFile(k2)).keyId;
    const write = async (fill: number): Promise<void> => {
      const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
      await group.write('a', fill * 64 * 1024, Buffer.alloc(256 * 1024, fill));
      await group.close();
    };
    const tapes = join(dir, 'tapes');
    await write(1);
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--base', '--encrypt-key', k1)).toExit(0);
    await write(2);
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--encrypt-key', k2)).toExit(0);
    const want = readFileSync(join(dir, 'a.img'));

    // One key: tape 2 is named by the id of the key it needs.
    const one = jshipJson('verify', tapes, '--key', k1);
    expect(one).toExit(1);
    expect(JSON.stringify(one.out)).toContain(`encrypted with key id ${id2}; the key given has id ${id1}`);
    const rep1 = join(dir, 'rep1');
    const part = jshipJson('import', rep1, tapes, '--key', k1);
    expect(part).toExit(1);
    expect(part.out.tapes.map((t: { outcome: string }) => t.outcome)).toEqual(['imported', 'refused']);
    expect(part.out.tapes[1].error ?? part.out.tapes[1].message).toMatch(new RegExp(`key id ${id2}`));

    // Both keys: everything.
    expect(jshipJson('verify', tapes, '--key', k1, '--key', k2)).toExit(0);
    const rep = join(dir, 'rep');
    const imp = jshipJson('import', rep, tapes, '--key', k1, '--key', k2);
    expect(imp).toExit(0);
    const out = join(dir, 'out.img');
    const r = jshipJson('restore', rep, '--target', out, '--key-dir', keys);
    expect(r).toExit(0);
    expect(readFileSync(out).equals(want)).toBe(true);
    // A restore across the change with only the old key: refused before a byte is written, naming the new key's id.
    const missing = jshipJson('restore', rep, '--target', join(dir, 'no.img'), '--key', k1);
    expect(missing).toExit(1);
    expect(missing.out.error.message).toBe(`tape 2 was encrypted with key id ${id2}; the key given has id ${id1}`);
    expect(missing.out.error.hint).toMatch(new RegExp(`give the key with id ${id2}`));
    const none = jshipJson('restore', rep, '--target', join(dir, 'no.img'));
    expect(none.out.error.code).toBe('TAPE_KEY_REQUIRED');
    // A key directory holding something that is not a key is refused, naming it.
    writeFileSync(join(keys, 'README'), 'keys of the prod group\n');
    const junk = jshipJson('restore', rep, '--target', join(dir, 'no.img'), '--key-dir', keys);
    expect(junk).toExit(2);
    expect(junk.out.error.message).toMatch(/README holds \d+ bytes, not a 256-bit key/);
  });
});
