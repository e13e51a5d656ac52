import type { Command } from 'commander';
import { isJshipError } from '../core/errors.js';
import { formatSize } from '../core/sizes.js';
import { formatDuration } from '../core/check.js';
import { formatTime } from '../core/time.js';
import type { GroupStatus } from '../journal/group-status.js';
import { onGroup } from '../owner/on-group.js';
import type { ServerStats } from '../nbd/server.js';
import { groupPaths, readGroupConfig } from '../journal/group-files.js';
import { readJournalSuperblock } from '../journal/journal-volume.js';
import { lockOwner } from '../io/dir-lock.js';
import { emit, table, type CommonOptions } from './output.js';
import type { SecondaryLag } from '../link/lag.js';
import type { JournalForecast, JournalRate } from '../core/journal-rates.js';
import { siteStatus, type ConsumerLag, type HeldBy } from '../owner/site-status.js';
import type { ServingStatus } from '../owner/serving.js';
import { generationOf } from '../core/epoch.js';
import { outsideText } from '../owner/site-checks.js';
import { demotedStatus as readDemotedStatus } from '../link/demote.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('state of a journal group: journal pointers and usage, sequence and time range, volumes')
    .argument('<GROUP_DIR>', 'the journal group')
    .option('--json', 'print one JSON object')
    .action(async (dir: string, opts: CommonOptions) => {
      let got: ServingStatus;
      try {
        got = await onGroup(dir, async (g) => ({ ...(await siteStatus(g)), serve: null }), { op: 'status', args: {} }, { open: { checkpointIntervalMs: 0 } });
      } catch (e) {
        // A demoted group is a secondary now: what it follows and how far its replica got.
        if (isJshipError(e, 'GROUP_DEMOTED')) {
          await demotedStatus(dir, opts);
          return;
        }
        // Owned by a process that does not answer (a library's, holding the group itself): read what is on disk.
        if (!isJshipError(e, 'GROUP_LOCKED')) throw e;
        await offlineStatus(dir, opts);
        return;
      }
      const { status: s, serve } = got;
      emit(opts, { ...(statusJson(s) as object), tapes: got.tapes, link: got.link, consumers: got.consumers, heldBy: got.heldBy, serving: serve }, () => [
        ...statusLines(s), ...forecastLines(s), tapesLine(got.tapes), ...consumerLines(got.consumers, got.heldBy), ...linkLines(got.link), ...(serve ? serveLines(serve) : []),
      ]);
    });
}

/** Write rate over 1 and 15 minutes and when the journal would be full. */
function forecastLines(s: GroupStatus): string[] {
  const r = s.rates;
  const line = (label: string, rate: JournalRate | null, f: JournalForecast): string => (rate === null
    ? `  ${label}: no rate yet (rates are measured by the process that owns the group, e.g. jship serve)`
    : `  ${label}: writes ${formatSize(Math.round(rate.bytesPerSecond))}/s (${rate.recordsPerSecond.toFixed(1)} records/s), purges ${formatSize(Math.round(rate.purgedBytesPerSecond))}/s; `
      + `${f.fullInSeconds === null ? 'not filling' : `full in ${formatDuration(f.fullInSeconds)}`}; would last ${f.lastsSeconds === null ? 'indefinitely (nothing written)' : formatDuration(f.lastsSeconds)} if every consumer stopped now`);
  return ['journal rates:', line('last 1 min', r.oneMinute, r.forecast.oneMinute), line('last 15 min', r.fifteenMinutes, r.forecast.fifteenMinutes)];
}

function tapesLine(t: ServingStatus['tapes']): string {
  return t.nextSerial === 1
    ? 'tapes: none exported yet'
    : `tapes: ${t.nextSerial - 1} exported, through seq ${t.exportedSeq}${t.awaitingAck.length > 0 ? `; awaiting an ack: tapes ${t.awaitingAck.join(', ')}` : ''}`;
}

/** Each consumer's RPO and lag, and why journal-out is where it is. */
function consumerLines(consumers: readonly ConsumerLag[], held: HeldBy): string[] {
  return [
    'consumers (RPO: the writes lost if the primary were lost now):',
    ...table(consumers.map((c) => [
      c.kind === 'tapes' ? 'tapes' : `secondary ${c.name}`,
      `RPO ${c.rpoSeconds === 0 ? '0 (holds everything)' : formatDuration(c.rpoSeconds)}`,
      `secured seq ${c.securedSeq}${c.securedTs !== null ? ` (${formatTime(c.securedTs)}, ${formatDuration(c.ageSeconds)} ago)` : ''}`,
      `behind ${c.behind.records} records${c.behind.bytes === null ? '' : `, ${formatSize(c.behind.bytes)}`}`,
      c.note ?? '',
    ])),
    `journal-out: ${held.why}`,
  ];
}

/** What a running `jship serve` adds: where it listens, its clients and request rates. */
function serveLines(v: ServerStats): string[] {
  const r = v.rates;
  return [
    `serving on ${v.listening} since ${v.startedAt}: ${v.connections.length} clients connected, ${v.totals.connections} since start`,
    `  last ${Math.round(r.seconds)} s: ${r.requestsPerSecond.toFixed(1)} requests/s, writes ${formatSize(Math.round(r.writeBytesPerSecond))}/s, reads ${formatSize(Math.round(r.readBytesPerSecond))}/s`,
    `  since start: ${v.totals.requests} requests, ${formatSize(v.totals.bytesWritten)} written, ${formatSize(v.totals.bytesRead)} read, ${v.totals.errors} errors`,
    ...table(v.connections.map((c) => [c.id, c.export ?? '(negotiating)', `${Object.values(c.requests).reduce((n, k) => n + k, 0)} requests`, `${c.inFlight} in flight`, `since ${c.connectedAt}`])),
  ];
}

/** Each link secondary: position and lag (records, bytes, seconds) and a catch-up estimate. */
function linkLines(link: SecondaryLag[]): string[] {
  if (link.length === 0) return [];
  const secs = (n: number | null): string => (n === null ? '?' : n < 120 ? `${n.toFixed(1)} s` : `${(n / 60).toFixed(1)} min`);
  return [
    `link secondaries: ${link.length}`,
    ...table(link.map((l) => [
      l.name, l.address ?? '-', `confirmed seq ${l.confirmedSeq}`, `lag ${l.records} records`, l.bytes === null ? '? bytes' : formatSize(l.bytes), secs(l.seconds),
      `eta ${secs(l.etaSeconds)}`, l.detached ? 'detached (failover)' : l.standby ? 'standby (failover)' : l.needsBase ? 'needs a base' : '', `seen ${l.lastSeen ?? 'never'}`,
    ])),
  ];
}

function time(ns: bigint | null): string | null {
  return ns === null ? null : formatTime(ns);
}

function statusJson(s: GroupStatus): unknown {
  const { now, time: t, ...rest } = s;
  return { ...rest, time: { firstTs: t.first, lastTs: t.last }, nowTs: now };
}

function statusLines(s: GroupStatus): string[] {
  const j = s.journal;
  return [
    `group ${s.groupId}  ${s.dir}`,
    `state: ${s.state}  (when full: ${s.policy.journalFull}; nearly-full at ${s.policy.nearlyFullPercent}%)`,
    s.fenced
      ? `role: FENCED — epoch ${generationOf(s.fenced.epochs)} of this group exists (learned from ${s.fenced.from} at ${s.fenced.learnedAt}): this site takes no writes`
      : `role: primary of epoch ${s.epoch.generation}${s.epoch.generation > 1 ? ` (from seq ${s.epoch.startSeq})` : ''}`,
    `journal ${j.path}  ${formatSize(j.size)}`,
    `  journal-out seq ${j.out.seq}  journal-in seq ${j.in.seq}  ${j.records} records, ${formatSize(j.bytes)} of data`,
    `  usage: ${j.usagePercent.metadata}% of ${j.metaSlots} record slots, ${j.usagePercent.data}% of ${formatSize(j.dataSize)} data`,
    `  PVOLs durable up to seq ${j.appliedSeq}: ${j.pvolBehind.records} records (${formatSize(j.pvolBehind.bytes)}) to checkpoint${j.pvolBehind.unwrittenBytes > 0 ? `, ${formatSize(j.pvolBehind.unwrittenBytes)} not written yet` : ''}`,
    s.sequence.first === null
      ? `  no records held${s.sequence.last !== null ? ` (last seq ${s.sequence.last})` : ''}`
      : `  sequence ${s.sequence.first}..${s.sequence.last}  time ${time(s.time.first)} .. ${time(s.time.last)}`,
    ...(s.outside ? [`CHANGED OUTSIDE JSHIP: ${outsideText(s.outside, s.dir)}`] : []),
    ...(s.dirty ? [`dirty bitmap: ${s.dirty.chunks} chunks (${formatSize(s.dirty.bytes)}) need a resync base`] : []),
    ...(s.base ? [`base ${s.base.baseId} (${s.base.scope}) in progress`] : []),
    ...(s.waitingWriters > 0 ? [`${s.waitingWriters} writers waiting for journal space`] : []),
    `restore points named: ${s.markers}`,
    'volumes:',
    ...table(s.volumes.map((v) => [v.name, formatSize(v.size), `${v.records} records`, formatSize(v.bytes), v.extents.map((e) => e.path).join(' + ')])),
  ];
}

/** Status of a group another process owns: its config and the journal's last durable checkpoint. */
async function offlineStatus(dir: string, opts: CommonOptions): Promise<void> {
  const config = await readGroupConfig(dir);
  const owner = await lockOwner(groupPaths(dir).lock);
  const sb = await readJournalSuperblock(config.journal.path);
  const json = {
    dir,
    groupId: config.groupId,
    epoch: generationOf(config.epochs ?? []),
    owner: owner ?? null,
    asOf: 'last checkpoint of the owning process',
    journal: { path: config.journal.path, size: sb.journalSize, out: { seq: sb.outSeq }, checkpoint: { seq: sb.headSeq }, records: sb.headSeq - sb.outSeq },
    volumes: config.volumes,
  };
  emit(opts, json, () => [
    `group ${config.groupId}  ${dir}`,
    `owned by process ${owner?.pid ?? '?'}${owner ? ` on ${owner.host}` : ''}: figures as of its last checkpoint`,
    `journal ${config.journal.path}  journal-out seq ${sb.outSeq}, checkpoint seq ${sb.headSeq} (${sb.headSeq - sb.outSeq} records)`,
    'volumes:',
    ...table(config.volumes.map((v) => [v.name, formatSize(v.extents.reduce((a, e) => a + e.size, 0)), v.extents.map((e) => e.path).join(' + ')])),
  ]);
}

/** Status of a demoted group: a secondary of the promoted site (`jship demote`). */
async function demotedStatus(dir: string, opts: CommonOptions): Promise<void> {
  const d = await readDemotedStatus(dir);
  if (!d) throw new Error(`${dir}: GROUP_DEMOTED without demoted.json`);
  const r = d.replica;
  emit(opts, d, () => [
    `group ${d.groupId}  ${d.dir}`,
    `role: secondary of epoch ${d.epoch.generation} (from seq ${d.epoch.startSeq}), demoted ${d.demotedAt}${d.full ? ' with a full base' : ''}${d.role === 'demoting' ? ' — DEMOTING: the resync is not applied yet (run jship demote again to finish it)' : ''}`,
    `  the takeover point: seq ${d.takeoverSeq}; this site's writes after it: ${d.diverged.records} records in ${d.diverged.chunks} chunks${d.diverged.tape ? `, kept on ${d.diverged.tape}` : ''}`,
    `replica ${r.dir} (its SVOLs are this group's volume files)`,
    `  holds records through ${r.lastSeq === null ? 'none yet' : `seq ${r.lastSeq}`}; last tape from the primary ${r.lastContact ?? 'never'}`,
    `  volumes at ${r.appliedSeq === null ? 'the takeover point plus this site\'s own writes (not applied yet)' : `seq ${r.appliedSeq}${r.appliedTs !== null ? ` (${formatTime(r.appliedTs)})` : ''}`}`,
    `follow the primary: jship link pull ${r.dir} --from HOST:PORT --apply (or import its tapes there); take over again: jship promote ${r.dir} --to NEW_GROUP_DIR`,
  ]);
}
