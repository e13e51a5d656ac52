import type { Command } from 'commander';
import { MANIFEST_NAME, checkManifest, decodeManifest, type ManifestCheck } from '../tape/manifest.js';
import { readBlockSize, withDeviceOptions, type DeviceCliOptions } from './device-options.js';
import { promises as fsp } from 'node:fs';
import { JshipError } from '../core/errors.js';
import { makeAck, parseAckKey } from '../core/ack.js';
import { writeFileAtomic } from '../io/files.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { importTapes, type ImportReport } from '../replica/import.js';
import { onInterrupt } from './signals.js';
import { emit, lazyProgress, type CommonOptions } from './output.js';
import { addReplicaWait, replicaWait } from './waiting.js';
import { s3Settings, withS3Options, type S3CliOptions } from './s3-options.js';

interface ImportCliOptions extends CommonOptions, S3CliOptions, KeyCliOptions, DeviceCliOptions {
  wait?: string;
  ackOut?: string;
  ackKey?: string;
  allowPlaintext?: boolean;
  manifest?: string;
}

export function registerImport(program: Command): void {
  const cmd = program
    .command('import')
    .description('verify tapes and store them in a replica (created on first use), catalogued by sequence and time')
    .argument('<REPLICA_DIR>', 'the replica (a new or empty directory creates one)')
    .argument('<TAPE_OR_DIR...>', 'tape files, directories of *.tar.zst tapes, s3://BUCKET/PREFIX (the tapes there, in order), or - for one tape on standard input (a pipe, a tape drive read with dd)')
    .option('--allow-plaintext', 'take plaintext tapes into a chain whose earlier tapes are encrypted (after export --allow-plaintext)')
    .option('--ack-out <FILE>', 'write an acknowledgement of the highest contiguous sequence number stored (for jship ack)')
    .option('--ack-key <FILE>', 'the group\'s ack.key (copied from the primary), to sign the acknowledgement')
    .option('--manifest <FILE>', 'the medium\'s jship-manifest.json (written by export beside the tapes): every tape it lists must have arrived intact, else exit 1 naming them')
    .option('--json', 'print one JSON object');
  addReplicaWait(withDeviceOptions(withS3Options(withKeyOptions(cmd))))
    .action(async (dir: string, sources: string[], opts: ImportCliOptions) => {
      const wait = replicaWait('import', opts.wait);
      if (opts.ackOut && !opts.ackKey) throw new JshipError('USAGE', '--ack-out needs --ack-key FILE (a copy of GROUP_DIR/ack.key)', { hint: 'copy ack.key from the primary site' });
      const keys = await keyRing(opts);
      const blockSize = readBlockSize(opts);
      const ackKey = opts.ackKey ? parseAckKey(await fsp.readFile(opts.ackKey, 'utf8').catch((e: Error) => {
        throw new JshipError('USAGE', `cannot read ${opts.ackKey}: ${e.message}`);
      }), opts.ackKey) : undefined;
      // The manifest is read and checked before anything is imported: a bad one is a usage error.
      const manifest = opts.manifest !== undefined
        ? decodeManifest(await fsp.readFile(opts.manifest, 'utf8').catch((e: Error) => {
          throw new JshipError('USAGE', `cannot read ${opts.manifest}: ${e.message}`, { hint: `give the ${MANIFEST_NAME} that came with the medium` });
        }), opts.manifest)
        : undefined;
      const bar = lazyProgress(opts, 'importing');
      const stopGuard = onInterrupt('import', () => 'the tapes taken before this one are stored and catalogued; the one being copied is not (its incoming file is removed by the next import). Rerun the same command: tapes already held are duplicates', opts.json === true);
      let report: ImportReport;
      try {
        report = await importTapes(dir, sources, {
          ...(keys ? { keys } : {}),
          ...(opts.allowPlaintext ? { allowPlaintext: true } : {}),
          s3: s3Settings(opts),
          ...(blockSize !== undefined ? { blockSize } : {}),
          ...(wait ? { wait } : {}),
          onProgress: bar.onProgress,
        });
      } finally {
        bar.stop();
        stopGuard();
      }
      let ack: { file: string; seq: bigint } | null = null;
      if (opts.ackOut && ackKey) {
        const replica = await fsp.readFile(`${report.replica}/replica.json`, 'utf8');
        const groupId = (JSON.parse(replica) as { groupId: string }).groupId;
        if (report.contiguousThrough === null) {
          process.stderr.write('jship: no acknowledgement written: the start of the chain (tape 1) is not in the replica\n');
        } else {
          await writeFileAtomic(opts.ackOut, `${JSON.stringify(makeAck(ackKey, groupId, report.contiguousThrough))}\n`);
          ack = { file: opts.ackOut, seq: report.contiguousThrough };
        }
      }
      let carried: (ManifestCheck & { file: string; foreign: boolean }) | null = null;
      if (manifest) {
        const groupId = (JSON.parse(await fsp.readFile(`${report.replica}/replica.json`, 'utf8').catch(() => '{}')) as { groupId?: string }).groupId;
        const got = report.tapes.filter((t) => t.serial !== null).map((t) => ({ serial: t.serial as number, sha256: t.sha256 ?? null }));
        const check = checkManifest(manifest, got);
        const foreign = groupId !== undefined && groupId !== manifest.groupId;
        carried = { file: opts.manifest as string, ...check, ok: check.ok && !foreign, foreign };
        if (!carried.ok) process.exitCode = 1;
      }
      if (!report.ok) process.exitCode = 1;
      emit(opts, { ...report, ack, manifest: carried }, () => [
        ...(report.created ? [`created replica ${report.replica}`] : []),
        ...report.tapes.map((t) => `${t.outcome.padEnd(9)} ${t.source}: ${t.message}`),
        report.coverage.length === 0 ? 'the replica holds no update records yet' : `holds seq ${report.coverage.map((c) => `${c.from}..${c.to}`).join(', ')}`,
        ...report.gaps.map((g) => `warning: gap: records ${g.from}..${g.to} missing${g.serials.length > 0 ? ` (expected in tape${g.serials.length > 1 ? 's' : ''} ${g.serials.join(', ')})` : ''}; import them when they arrive`),
        ...(report.missingSerials.length > 0 ? [`warning: tapes not yet imported: ${report.missingSerials.join(', ')}`] : []),
        ...(ack ? [`acknowledgement of seq ${ack.seq} written to ${ack.file}`] : []),
        ...(carried ? manifestLines(carried) : []),
      ]);
    });
}

function manifestLines(c: ManifestCheck & { file: string; foreign: boolean }): string[] {
  const list = (xs: number[]): string => xs.join(', ');
  if (c.ok) return [`manifest ${c.file}: all ${c.arrived.length} tapes it lists arrived intact${c.unlisted.length ? ` (also given, not listed: ${list(c.unlisted)})` : ''}`];
  return [
    ...(c.foreign ? [`MANIFEST ${c.file} is of another group than this replica`] : []),
    ...(c.missing.length ? [`MANIFEST ${c.file}: tape${c.missing.length > 1 ? 's' : ''} ${list(c.missing)} listed but not given: not on the medium, or not named on the command line`] : []),
    ...(c.differs.length ? [`MANIFEST ${c.file}: tape${c.differs.length > 1 ? 's' : ''} ${list(c.differs)} arrived, but not as written (another hash, damaged, or refused): get ${c.differs.length > 1 ? 'them' : 'it'} again from the primary's copies`] : []),
  ];
}

