import { describe, expect, it } from 'vitest';
import { RECORD_SIZE } from '../../src/core/record.js';
import { RateWindow, forecast, MINUTE_NS } from '../../src/core/journal-rates.js';
import { newSecondary, updateRegistry } from '../../src/link/registry.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { heldBy, siteStatus } from '../../src/owner/site-status.js';
import { KiB, MiB, makeGroup, tempDir } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';

const S = 1_000_000_000n;
const T0 = 1_800_000_000n * S; // 2027-01-15T08:00:00Z

describe('RPO, lag and journal forecast (a test clock, no sleeps)', () => {
  const dir = tempDir();

  it('each consumer: secured seq and time, records and bytes behind, RPO; rates over 1 and 15 minutes; full-in forecast; why journal-out is where it is', async () => {
    const g = await makeGroup(dir, { a: 4 * MiB }, { journalSize: 8 * MiB });
    let wall = T0;
    let mono = 0n;
    const step = (sec: bigint): void => { wall += sec * S; mono += sec * S; };
    const group = await openSiteGroup(g, { wallClock: () => wall, monoClock: () => mono, checkpointIntervalMs: 0 });
    try {
      // Nothing secures anything yet: nothing purges the journal.
      let st = await siteStatus(group);
      expect(st.heldBy.why).toMatch(/nothing purges the journal/);
      expect(st.status.rates.oneMinute).toBeNull();

      // 20 writes of 64 KiB, one every 10 s (t = 10..200 s).
      for (let i = 0; i < 20; i++) {
        step(10n);
        await group.write('a', i * 64 * KiB, Buffer.alloc(64 * KiB, i + 1));
      }
      await group.flush();
      const e1 = await exportTo(group, `${dir}/tapes`);
      expect(e1.updates?.lastSeq).toBe(20n);
      // Five more writes at t = 230, 260, 290, 320, 350.
      for (let i = 0; i < 5; i++) {
        step(30n);
        await group.write('a', i * 64 * KiB, Buffer.alloc(64 * KiB, 0x40 + i));
      }
      await group.flush();
      step(10n); // now: t = 360 s
      st = await siteStatus(group);
      const tapes = st.consumers.find((c) => c.kind === 'tapes')!;
      expect(tapes.securedSeq).toBe('20');
      expect(tapes.securedTs).toBe(T0 + 200n * S);
      expect(tapes.ageSeconds).toBe(160);
      expect(tapes.behind).toEqual({ records: '5', bytes: 5 * 64 * KiB });
      // The oldest write the tapes lack was at t = 230 s: 130 s ago.
      expect(tapes.rpoSeconds).toBe(130);
      expect(st.heldBy).toEqual({ consumer: 'tapes', seq: '20', why: 'held for the tape chain at seq 20' });
      expect(st.status.journal.out.seq).toBe(21n);

      // Rates: "the last minute" runs from the newest sample at least a minute old (the write at t = 290),
      // so it saw the writes at t = 320 and 350 and no purge; the 15 minutes everything since open.
      const m1 = st.status.rates.oneMinute!;
      expect(m1.seconds).toBe(70);
      expect(m1.bytesPerSecond * m1.seconds).toBe(2 * 64 * KiB);
      const m15 = st.status.rates.fifteenMinutes!;
      expect(m15.seconds).toBe(360);
      expect(m15.bytesPerSecond).toBeCloseTo((25 * 64 * KiB) / 360, 6);
      expect(m15.purgedBytesPerSecond).toBeCloseTo((20 * 64 * KiB) / 360, 6);
      const free = st.status.journal.dataSize - Number(st.status.journal.bytes);
      expect(st.status.rates.forecast.fifteenMinutes.lastsSeconds).toBeCloseTo(free / m15.bytesPerSecond, 3);
      expect(st.status.rates.forecast.fifteenMinutes.fullInSeconds).toBeCloseTo(free / (m15.bytesPerSecond - m15.purgedBytesPerSecond), 3);

      // A tape kept until its acknowledgement: journal-out says so.
      step(10n);
      const e2 = await exportTo(group, `${dir}/tapes`, { keepUntilAck: true });
      st = await siteStatus(group);
      expect(st.heldBy.why).toBe(`held for the tape chain at seq 20; tape ${e2.tapes[0]!.serial} awaits an acknowledgement`);
      expect(st.consumers[0]!.rpoSeconds).toBe(140);

      // A slower secondary holds it instead; a detached one does not.
      await updateRegistry(g, (r) => { r.secondaries.push({ ...newSecondary('site-b', 12n, '10.0.0.2:7000'), needsBase: false }); });
      await updateRegistry(g, (r) => { r.secondaries.push({ ...newSecondary('site-c', 3n, null), needsBase: false, detached: true }); });
      st = await siteStatus(group);
      expect(st.heldBy).toMatchObject({ consumer: 'site-b', seq: '12' });
      expect(st.heldBy.why).toBe('held for secondary site-b at seq 12');
      const b = st.consumers.find((c) => c.name === 'site-b')!;
      expect(b.behind.records).toBe('13');
      // Its records after 12 are purged already (the tapes had them): bytes and RPO unknown, not invented.
      expect(b.behind.bytes).toBeNull();
      expect(b.rpoSeconds).toBeNull();
      expect(st.consumers.find((c) => c.name === 'site-c')!.pins).toBe(false);
    } finally {
      await group.close();
    }
  });

  it('a suspended group says so in the journal-out line (pure)', () => {
    const status = { state: 'suspended' } as Parameters<typeof heldBy>[0];
    const why = heldBy(status, [{ kind: 'tapes', name: 'tapes', securedSeq: '7', securedTs: null, ageSeconds: null, behind: { records: '0', bytes: 0 }, rpoSeconds: 0, pins: true, note: null }]).why;
    expect(why).toBe('held for the tape chain at seq 7; the group is suspended: writes are tracked in the dirty bitmap until a resync base is exported');
  });

  it('rates: samples at most every interval, windows shorter while young, forecasts by slots or bytes, whichever runs out first', () => {
    const c = (records: number, bytes: number, pr = 0, pb = 0) => ({ records: BigInt(records), bytes: BigInt(bytes), purgedRecords: BigInt(pr), purgedBytes: BigInt(pb) });
    const w = new RateWindow(0n, c(0, 0));
    expect(w.rate(S / 2n, c(1, 100), MINUTE_NS)).toBeNull();
    for (let t = 1n; t <= 1200n; t++) w.note(t * S, c(Number(t), Number(t) * 1000));
    // Writes at 1 record and 1000 B per second; no purge.
    const r1 = w.rate(1200n * S, c(1200, 1_200_000), MINUTE_NS)!;
    expect(r1.seconds).toBe(60);
    expect(r1.bytesPerSecond).toBe(1000);
    const r15 = w.rate(1200n * S, c(1200, 1_200_000), 15n * MINUTE_NS)!;
    expect(r15.seconds).toBe(900);
    // Slots run out first: 100 free slots at 1/s, 1 MB free at 1000 B/s.
    expect(forecast({ records: 900n, metaSlots: 1000, bytes: 0n, dataSize: 1_000_000 }, r1)).toEqual({ fullInSeconds: 100, lastsSeconds: 100 });
    // Purging as fast as writing: not filling, but it would last 1000 s if consumers stopped.
    const even = { ...r1, purgedRecordsPerSecond: 1, purgedBytesPerSecond: 1000 };
    expect(forecast({ records: 0n, metaSlots: 1_000_000, bytes: 0n, dataSize: 1_000_000 }, even)).toEqual({ fullInSeconds: null, lastsSeconds: 1000 });
    expect(RECORD_SIZE).toBe(64);
  });
});
