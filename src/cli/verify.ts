import type { Command } from 'commander';
import { verifyDeep } from '../replica/deep-verify.js';
import { proofText } from '../replica/prove.js';
import { pointFromOptions, withPointOptions } from './restore.js';
import { readBlockSize, withDeviceOptions, type DeviceCliOptions } from './device-options.js';
import { JshipError } from '../core/errors.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { verifyTapes } from '../tape/verify.js';
import { expandTapeSources } from '../tape/tape-file.js';
import { formatSize } from '../core/sizes.js';
import { emit, type CommonOptions } from './output.js';
import { s3Settings, withS3Options, type S3CliOptions } from './s3-options.js';
import { addReplicaWait, replicaWait } from './waiting.js';

export function registerVerify(program: Command): void {
  const cmd = program
    .command('verify')
    .description('check tapes offline, with no replica: structure, every checksum and hash, trailer, and the chain between tapes given together')
    .argument('<TAPE...>', 'tape files (or directories of them), tape drives or FIFOs, s3://BUCKET/KEY.tar.zst objects or s3://BUCKET/PREFIX; with --deep, a replica directory')
    .option('--deep', 'REPLICA_DIR instead of tapes: read a point (--marker, --seq, --until) from the replica as a restore would and prove it equal to the primary\'s digest of it, writing nothing')
    .option('--json', 'print one JSON object');
  addReplicaWait(withPointOptions(withDeviceOptions(withS3Options(withKeyOptions(cmd)))))
    .action(async (paths: string[], opts: CommonOptions & S3CliOptions & KeyCliOptions & DeviceCliOptions & { deep?: boolean; until?: string; exclusive?: boolean; marker?: string; seq?: string; wait?: string }) => {
      const keys = await keyRing(opts);
      const point = opts.until !== undefined || opts.marker !== undefined || opts.seq !== undefined ? pointFromOptions(opts) : undefined;
      if (opts.deep) {
        if (paths.length !== 1) throw new JshipError('USAGE', 'verify --deep takes one replica directory', { hint: 'e.g. jship verify --deep /srv/replica --marker nightly-2026-12-01' });
        if (!point) throw new JshipError('USAGE', 'verify --deep needs the point to prove: --marker NAME (or --seq N of a base completion)', { hint: 'jship timeline REPLICA lists the restore points' });
        const wait = replicaWait('verify', opts.wait);
        const v = await verifyDeep(paths[0] as string, point, { ...(keys ? { keys } : {}), ...(wait ? { wait } : {}) });
        if (!v.proof.equal) process.exitCode = 1;
        emit(opts, { ok: v.proof.equal, point: v.point, seq: v.seq, proof: v.proof }, () => [
          `${v.proof.equal ? 'ok ' : 'BAD'} ${v.point} (seq ${v.seq}): ${proofText(v.proof)}`,
          ...v.proof.volumes.map((x) => `    ${x.name}: ${x.equal ? 'equal' : `DIFFERS (primary ${x.expected.slice(0, 16)}…, replica ${x.got.slice(0, 16)}…)`}`),
        ]);
        return;
      }
      if (point || opts.wait !== undefined) throw new JshipError('USAGE', `${point ? '--marker, --seq and --until go' : '--wait goes'} with --deep`, { hint: 'verify --deep REPLICA_DIR --marker NAME' });
      const sources = await expandTapeSources(paths, s3Settings(opts), readBlockSize(opts));
      if (sources.length === 0) throw new JshipError('USAGE', `no tapes in ${paths.join(', ')}`, { hint: 'name tape files, directories holding *.tar.zst tapes, or s3:// objects or prefixes holding tapes' });
      const results = await verifyTapes(sources, keys ? { keys } : {});
      if (results.some((r) => !r.ok)) process.exitCode = 1;
      emit(opts, { ok: results.every((r) => r.ok), tapes: results }, () => results.flatMap((r) => [
        r.ok
          ? `ok    ${r.path}: tape ${r.label?.serial}, ${r.segments} segments, ${r.records} records${r.firstSeq !== null ? `, seq ${r.firstSeq}..${r.lastSeq}` : ''}, ${formatSize(r.bytes)}${r.parity ? `, parity ${r.parity.percent} % intact` : ''}${r.recordsChecked ? '' : ' (encrypted: structure and hashes checked; give --key to check the records)'}`
          : `BAD   ${r.path}: ${r.error ? `${r.error.message}; intact before it: ${r.error.segmentsIntact} segments, ${r.error.recordsIntact} records${r.error.lastGoodSeq ? ` (through seq ${r.error.lastGoodSeq})` : ''}` : 'chain problem'}`,
        ...(r.parity && !r.ok ? [`      parity ${r.parity.percent} %: ${r.parity.state === 'repairable' ? `damaged, repairable: jship import rebuilds ${r.parity.rebuilt.join(', ')} from the tape's parity` : r.parity.state === 'lost' ? `damaged, lost: beyond the parity (${r.parity.lost.join(', ')})` : r.parity.state === 'unknown' ? 'copy the tape to a local file and verify that to know whether its parity rebuilds it' : 'intact'}`] : []),
        ...(r.error?.hint ? [`      hint: ${r.error.hint}`] : []),
        ...r.chain.map((c) => `      chain: ${c}`),
      ]));
    });
}
