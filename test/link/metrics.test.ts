import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { groupPaths } from '../../src/journal/group-files.js';
import { MiB, makeGroup, scrapeMetrics, tempDir } from '../helpers.js';
import { client, serve } from '../nbd/helpers.js';
import { linkProc, until } from './helpers.js';

describe('link pull --metrics', () => {
  const dir = tempDir();

  it('a pulling secondary serves what it received and how far its SVOLs are behind (promtool-clean); the primary logs a secondary that was killed', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 16 * MiB });
    const srv = await serve(g, '--link-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0');
    const pull = await linkProc('pull', join(dir, 'rep'), '--from', (srv.ready as any).link, '--psk', groupPaths(g).linkKey, '--name', 'site-b', '--apply', '--metrics', '127.0.0.1:0');
    try {
      const url = `http://${pull.ready.metrics}/metrics`;
      expect(scrapeMetrics([url]).get('jship_link_tapes_received_total') ?? 0).toBeGreaterThanOrEqual(0);
      client('qemu-io', '-f', 'raw', srv.ready.exports[0]!.uri, '-c', 'write -P 0x41 0 1M', '-c', 'write -P 0x42 2M 1M');
      // The records arrive, are stored and applied: the SVOLs catch up with what is stored.
      await until('the secondary to store and apply the writes', () => {
        const m = scrapeMetrics([url]);
        return (m.get('jship_link_records_received_total') ?? 0) >= 2 && m.get('jship_link_apply_lag_records') === 0 && m.get('jship_link_sequence{pointer="restored"}') === m.get('jship_link_sequence{pointer="read"}');
      }, 60_000);
      const m = scrapeMetrics([url]);
      expect(m.get('jship_link_connected')).toBe(1);
      // The primary counts the session, and the secondary among its consumers.
      const p = scrapeMetrics([`http://${(srv.ready as any).metrics}/metrics`]);
      expect(p.get('jship_link_sessions')).toBe(1);
      expect(p.get('jship_consumer_secured_sequence{consumer="secondary/site-b"}')).toBeGreaterThanOrEqual(2);
      expect(m.get('jship_link_tapes_received_total')).toBeGreaterThanOrEqual(1);
      expect(m.get('jship_link_bytes_received_total')).toBeGreaterThan(0);
      expect(m.get('jship_link_last_tape_time_seconds')).toBeGreaterThan(Date.now() / 1000 - 600);
      await pull.kill();
      await until('the primary to log the lost secondary', () => / disconnected peer=\S+ code=LINK_CLOSED /.test(srv.log()));
    } finally {
      await pull.stop();
      expect((await srv.stop())).toExit(0);
    }
  });
});
