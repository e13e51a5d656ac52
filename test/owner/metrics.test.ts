import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, jshipJson, makeGroup, scrapeMetrics, tempDir } from '../helpers.js';
import { serve } from '../nbd/helpers.js';
import { until } from '../link/helpers.js';

describe('serve --metrics (Prometheus)', () => {
  const dir = tempDir();

  it('serves the exposition format (promtool-clean) while fio writes: journal, consumers, exports, NBD latency move as they should', async () => {
    const g = await makeGroup(dir, { a: 16 * MiB }, { journalSize: 64 * MiB });
    const srv = await serve(g, '--metrics', '127.0.0.1:0');
    try {
      const at = (srv.ready as any).metrics as string;
      expect(at).toMatch(/^127\.0\.0\.1:\d+$/);
      const url = `http://${at}/metrics`;
      const m0 = scrapeMetrics([url]);
      expect(m0.get('jship_journal_state{state="active"}')).toBe(1);
      expect(m0.get('jship_journal_capacity{ring="data"}')).toBeGreaterThan(60 * MiB);
      expect(m0.get('jship_nbd_clients')).toBe(0);
      expect(m0.get('jship_link_sessions')).toBe(0);
      expect(m0.get('jship_journal_written_total{unit="records"}') ?? 0).toBe(0);

      // Paced (2 s at least), so that a scrape sees the client connected however busy the machine is.
      const fio = spawn('fio', ['--name=m', '--ioengine=nbd', `--uri=${srv.ready.exports[0]!.uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=4', '--size=4M', '--io_size=2M', '--rate_iops=256'], { stdio: 'ignore' });
      const fioDone = new Promise<number | null>((r) => fio.on('close', r));
      // While it writes: a client is connected and records are journaled.
      await until('fio to connect and write', () => {
        const m = scrapeMetrics([url]);
        return m.get('jship_nbd_clients') === 1 && (m.get('jship_journal_written_total{unit="records"}') ?? 0) > 0;
      }, 60_000);
      expect(await fioDone).toBe(0);
      const m1 = scrapeMetrics([url]);
      expect(m1.get('jship_journal_written_total{unit="records"}')).toBeGreaterThanOrEqual(512);
      expect(m1.get('jship_nbd_bytes_total{direction="written"}')).toBe(2 * MiB);
      expect(m1.get('jship_nbd_request_duration_seconds_count{op="write"}')).toBeGreaterThanOrEqual(512);
      expect(m1.get('jship_nbd_request_duration_seconds_bucket{le="+Inf",op="write"}')).toBe(m1.get('jship_nbd_request_duration_seconds_count{op="write"}'));
      // No tape yet: the tape chain lacks every record.
      expect(m1.get('jship_consumer_lag_records{consumer="tapes"}')).toBeGreaterThan(0);

      // An export through the owner: counted; the tapes then lag by nothing.
      expect(jshipJson('export', g, '--to', `${join(dir, 'tapes')}/`, '--base')).toExit(0);
      const bad = jshipJson('export', g, '--to', '/proc/no/such/', '--allow-empty');
      expect(bad.out.error.message).toMatch(/\/proc\/no/);
      const m2 = scrapeMetrics([url]);
      expect(m2.get('jship_exports_total{result="ok"}')).toBe(1);
      expect(m2.get('jship_exports_total{result="failed"}')).toBe(1);
      expect(m2.get('jship_export_bytes_total')).toBeGreaterThan(0);
      expect(m2.get('jship_consumer_lag_records{consumer="tapes"}')).toBe(0);
      expect(m2.get('jship_consumer_rpo_seconds{consumer="tapes"}')).toBe(0);
      // Everything journaled (the writes and the base's markers) is on a tape, and purged.
      expect(m2.get('jship_journal_purged_total{unit="records"}')).toBe(m2.get('jship_journal_written_total{unit="records"}'));
      // Each export is also an event of the server.
      await until('the export events', () => /export-failed/.test(srv.log()));
      expect(srv.log()).toMatch(/ export-started to=\S+ base=true\n.* export-done to=\S+ tapes=1 records=\d+ tapeBytes=\d+ seconds=\S+ journalOut=\d+\n/);
      expect(srv.log()).toMatch(/ export-failed to=\/proc\/no\/such\/ error=".*\/proc\/no/);
      // Only /metrics is served.
      expect(spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${at}/`], { encoding: 'utf8' }).stdout).toBe('404');
    } finally {
      expect((await srv.stop())).toExit(0);
    }
  });

  it('on a Unix socket; a bad address is a usage error', async () => {
    const g = await makeGroup(join(dir, 'u'), { a: 1 * MiB });
    const sock = join(dir, 'metrics.sock');
    const srv = await serve(g, '--metrics', sock);
    try {
      expect(scrapeMetrics(['--unix-socket', sock, 'http://localhost/metrics']).get('jship_journal_state{state="active"}')).toBe(1);
    } finally {
      expect((await srv.stop())).toExit(0);
    }
    expect(jshipJson('serve', g, '--metrics', 'nowhere')).toExit(2);
  });

  it('the sample scrape config is one promtool accepts', () => {
    const r = spawnSync('promtool', ['check', 'config', new URL('../../samples/prometheus.yml', import.meta.url).pathname], { encoding: 'utf8' });
    expect(r).toExit(0);
  });
});
