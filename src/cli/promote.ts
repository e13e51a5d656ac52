import { promises as fsp } from 'node:fs';
import type { Command } from 'commander';
import { parseAckKey } from '../core/ack.js';
import { JshipError } from '../core/errors.js';
import { formatSize, parseSize } from '../core/sizes.js';
import { formatTime, parseDuration } from '../core/time.js';
import { readLinkKey } from '../link/link-tls.js';
import { DEFAULT_QUIET_MS, promoteReplica } from '../replica/promote.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { addReplicaWait, replicaWait } from './waiting.js';
import { emit, lazyProgress, type CommonOptions } from './output.js';
import { pointFromOptions, withPointOptions } from './restore.js';

interface PromoteCliOptions extends CommonOptions, KeyCliOptions {
  to?: string;
  journalSize: string;
  chunkSize: string;
  force?: boolean;
  quietFor?: string;
  psk?: string;
  ackKey?: string;
  until?: string;
  exclusive?: boolean;
  marker?: string;
  seq?: string;
  wait?: string;
}

export function registerPromote(program: Command): void {
  addReplicaWait(withKeyOptions(withPointOptions(program
    .command('promote')
    .description('takeover: make this replica\'s site the primary of a new epoch of the group, its SVOLs (restored to a consistent point, the latest by default) the PVOLs')
    .argument('<REPLICA_DIR>', 'the replica to promote')
    .option('--to <GROUP_DIR>', 'the new group\'s directory (new or empty); serve it with jship serve GROUP_DIR')
    .option('--journal-size <SIZE>', 'size of the new group\'s journal (K, M, G, T are powers of 1024)', '1G')
    .option('--chunk-size <SIZE>', 'chunk of base reads and of the bitmap of chunks written in the new epoch (what a demoted old primary gets again)', '1M')
    .option('--psk <FILE>', 'the group\'s link key (the copy this site used for link pull/receive): sites following the old primary follow the new one with it; default: a new key')
    .option('--ack-key <FILE>', 'the group\'s ack.key (the copy this site used for import --ack-out); default: a new key')
    .option('--quiet-for <DURATION>', 'how long the old primary must have been silent (no tape stored) before a promotion without --force (default 5m)')
    .option('--force', 'promote although the old primary was heard from recently (make sure it is down or cut off: two primaries would write apart); recorded in the new epoch\'s first marker')
    .option('--json', 'print one JSON object'))))
    .action(async (dir: string, opts: PromoteCliOptions) => {
      if (opts.to === undefined) throw new JshipError('USAGE', 'promote needs --to GROUP_DIR', { hint: 'name a new directory for the group the site serves from now on' });
      const point = pointFromOptions(opts);
      const journalSize = parseSize(opts.journalSize, '--journal-size');
      const chunkSize = parseSize(opts.chunkSize, '--chunk-size');
      if (chunkSize < 4096 || (chunkSize & (chunkSize - 1)) !== 0) throw new JshipError('BAD_SIZE', `--chunk-size ${opts.chunkSize} must be a power of two of at least 4K`, { hint: 'e.g. 64K or 1M' });
      const quietMs = opts.quietFor !== undefined ? Number(parseDuration(opts.quietFor, '--quiet-for') / 1_000_000n) : DEFAULT_QUIET_MS;
      const linkKey = opts.psk !== undefined ? `${(await readLinkKey(opts.psk)).toString('hex')}\n` : undefined;
      const ackKey = opts.ackKey !== undefined ? await readAckKeyFile(opts.ackKey) : undefined;
      const keys = await keyRing(opts);
      const wait = replicaWait('promote', opts.wait);
      const bar = lazyProgress(opts, 'promoting', 'bytes');
      let r;
      try {
        r = await promoteReplica(dir, {
          to: opts.to, point, journalSize, chunkSize, quietMs,
          ...(opts.force ? { force: true } : {}),
          ...(linkKey !== undefined ? { linkKey } : {}),
          ...(ackKey !== undefined ? { ackKey } : {}),
          ...(keys ? { keys } : {}),
          ...(wait ? { wait } : {}),
          onProgress: bar.onProgress,
        });
      } finally {
        bar.stop();
      }
      emit(opts, r, () => [
        `${r.resumed ? 'finished the interrupted promotion of' : 'promoted'} ${r.replica}: ${r.groupDir} is the primary of epoch ${r.epoch.generation} of group ${r.groupId}, from seq ${r.epoch.startSeq}`,
        `  its volumes hold ${r.point.name} (seq ${r.point.seq}${r.point.ts !== null ? `, ${formatTime(r.point.ts)}` : ''}): ${r.volumes.map((v) => `${v.name} ${formatSize(v.size)} at ${v.path}`).join(', ')}`,
        ...(r.forced ? [`  forced: the old primary was heard from at ${r.lastContact ?? '?'}; this is recorded in the epoch's first marker`] : []),
        ...(r.newKeys.length > 0 ? [`  new ${r.newKeys.join(' and ')} made: the sites that follow this group need copies (or promote again with --psk/--ack-key)`] : []),
        `  next: jship serve ${r.groupDir}; the other secondaries follow it (link pull, or its tapes); the old primary is fenced when it hears of this epoch`,
      ]);
    });
}

async function readAckKeyFile(path: string): Promise<string> {
  const text = await fsp.readFile(path, 'utf8').catch((e: Error) => {
    throw new JshipError('USAGE', `cannot read ${path}: ${e.message}`, { hint: 'name a copy of the group\'s ack.key' });
  });
  parseAckKey(text, path);
  return `${text.trim()}\n`;
}
