import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseRate } from '../../src/core/sizes.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { MiB, jshipAsync, jshipJson, makeGroup, tempDir } from '../helpers.js';
import { serve } from '../nbd/helpers.js';
import { until } from '../link/helpers.js';

/**
 * A loose smoke of --bwlimit (the measured check is `npm run bench -- bwlimit`):
 * only lower bounds on time, which a loaded machine can only make longer.
 */
describe('bandwidth limits', () => {
  const dir = tempDir();

  async function groupWith(name: string, mib: number): Promise<string> {
    const g = await makeGroup(join(dir, name), { a: 16 * MiB }, { journalSize: 32 * MiB });
    const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    for (let i = 0; i < mib; i++) await group.write('a', i * MiB, randomBytes(MiB));
    await group.close();
    return g;
  }

  it('rates as rclone writes them', () => {
    expect(parseRate('20M')).toBe(20 * MiB);
    expect(parseRate('512K/s')).toBe(512 * 1024);
    expect(parseRate('100')).toBe(100 * 1024);
    expect(parseRate('off')).toBeNull();
    expect(parseRate('0')).toBeNull();
    expect(() => parseRate('fast')).toThrow(/is not a size/);
    expect(() => parseRate('100B')).toThrow(/below 1 KiB/);
  });

  it('export --bwlimit paces the tape; jship bwlimit changes the rate of an export running in serve', async () => {
    const g = await groupWith('e', 4);
    const t0 = Date.now();
    const slow = jshipJson('export', g, '--to', `${join(dir, 'tapes')}/`, '--bwlimit', '1M');
    expect(slow).toExit(0);
    expect(slow.out.tapeBytes).toBeGreaterThan(4 * MiB);
    // 4 MiB at 1 MiB/s, less the half-second burst: at least ~3.5 s.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3400);

    const g2 = await groupWith('s', 6);
    const srv = await serve(g2);
    try {
      const started = Date.now();
      const running = jshipAsync('export', g2, '--to', `${join(dir, 'tapes2')}/`, '--bwlimit', '256K');
      // Once the export runs in the server, the new limit reaches it (it would take 24 s at 256 KiB/s).
      await until('the export to be running in serve', () => jshipJson('bwlimit', g2, '256K').out.exports === 1, 30_000);
      const lifted = jshipJson('bwlimit', g2, 'off');
      expect(lifted.out).toEqual({ exports: 1, link: false, rate: null });
      const r = await running;
      expect(r).toExit(0);
      expect(Date.now() - started).toBeLessThan(24_000);
    } finally {
      expect((await srv.stop())).toExit(0);
    }
    expect(jshipJson('bwlimit', g2, '1M')).toExit(2);
    expect(jshipJson('bwlimit', g2, 'soon')).toExit(2);
  });
});
