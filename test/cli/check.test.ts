import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, MiB, jshipJson, makeGroup, tempDir } from '../helpers.js';

/** `jship check` as cron or a monitoring system runs it: exit 0 when all hold, 1 when one does not, 2 on usage. */
describe('jship check', () => {
  const dir = tempDir();

  it('a group: state, RPO of every consumer, journal usage; a replica: age of the newest restorable point; exit codes and --json', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB }, { journalSize: 4 * MiB, existingFiles: true });
    const ok = jshipJson('check', g);
    expect(ok).toExit(0);
    expect(ok.out).toEqual({ dir: g, ok: true, checks: [{ name: 'state', ok: true, message: 'journal state active' }] });
    // Nothing secures the journal yet.
    const none = jshipJson('check', g, '--max-rpo', '1h');
    expect(none).toExit(1);
    expect(none.out.checks.find((c: { name: string }) => c.name === 'rpo').message).toMatch(/nothing secures the journal/);

    expect(jshipJson('mark', g, 'one')).toExit(0);
    const tapes = join(dir, 'tapes');
    expect(jshipJson('export', g, '--to', `${tapes}/`)).toExit(0);
    expect(jshipJson('check', g, '--max-rpo', '1h')).toExit(0);
    expect(jshipJson('mark', g, 'two')).toExit(0);
    // The mark after the export is not on a tape: its age is the RPO, more than 0 s and less than an hour.
    expect(jshipJson('check', g, '--max-rpo', '1h')).toExit(0);
    const late = jshipJson('check', g, '--max-rpo', '0s');
    expect(late).toExit(1);
    expect(late.out.checks).toContainEqual({ name: 'rpo tapes', ok: false, message: expect.stringMatching(/^tapes: RPO .* \(at most 0\.0 s\), 1 records behind$/) });
    expect(jshipJson('check', g, '--max-usage', '0')).toExit(1);
    const usage = jshipJson('check', g, '--max-usage', '90%');
    expect(usage).toExit(0);
    expect(usage.out.checks[1].message).toMatch(/^journal [\d.]+% used \(at most 90%\)/);
    // Human output names each check.
    const human = spawnSync(process.execPath, [BIN, 'check', g, '--max-rpo', '0s'], { encoding: 'utf8' });
    expect(human).toExit(1);
    expect(human.stdout).toMatch(/^ok {4}journal state active\nFAIL {2}tapes: RPO /);
    expect(human.stdout).toMatch(/1 of 2 checks fail\n$/);

    // Usage errors: exit 2.
    expect(jshipJson('check', g, '--max-age', '1h')).toExit(2);
    expect(jshipJson('check', g, '--max-usage', '120')).toExit(2);
    expect(jshipJson('check', g, '--max-rpo', 'soon')).toExit(2);
    expect(jshipJson('check', join(dir, 'nowhere'))).toExit(2);

    const rep = join(dir, 'rep');
    expect(jshipJson('import', rep, tapes)).toExit(0); // no base yet: imported, but nothing restorable
    const empty = jshipJson('check', rep, '--max-age', '1h');
    expect(empty).toExit(1);
    expect(empty.out.checks[1].message).toMatch(/^nothing can be restored/);
    expect(jshipJson('export', g, '--to', `${tapes}/`, '--base')).toExit(0);
    expect(jshipJson('import', rep, tapes)).toExit(0);
    const fresh = jshipJson('check', rep, '--max-age', '1h');
    expect(fresh).toExit(0);
    expect(fresh.out.checks[1].message).toMatch(/^newest restorable point seq \d+ at .*Z: .* old \(at most 60\.0 min\)$/);
    expect(jshipJson('check', rep, '--max-age', '0s')).toExit(1);
    expect(jshipJson('check', rep, '--max-rpo', '1h')).toExit(2);
  });
});
