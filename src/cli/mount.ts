import type { Command } from 'commander';
import { JshipError } from '../core/errors.js';
import { formatSize, parseSize } from '../core/sizes.js';
import { formatTime } from '../core/time.js';
import { NbdServer, type Listen } from '../nbd/server.js';
import { PointMount } from '../replica/mount.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { emit, eventLog, type CommonOptions } from './output.js';
import { proofText, provePoint } from '../replica/prove.js';
import { pointFromOptions, withPointOptions } from './restore.js';
import { parseListen } from './serve.js';
import { addReplicaWait, replicaWait } from './waiting.js';
import { untilStopSignal } from './signals.js';

interface MountCliOptions extends CommonOptions, KeyCliOptions {
  wait?: string;
  volume: string[];
  prove: boolean;
  until?: string;
  exclusive?: boolean;
  marker?: string;
  seq?: string;
  socket?: string;
  listen?: string;
  writable?: boolean;
  scratch?: string;
  keepScratch?: boolean;
  cacheSize: string;
}

const collect = (v: string, all: string[]): string[] => [...all, v];

export function registerMount(program: Command): void {
  withKeyOptions(withPointOptions(addReplicaWait(program
    .command('mount')
    .description('serve a point in time of a replica over NBD, read-only, straight from its tapes (nothing is restored first); stop with SIGTERM or Ctrl-C')
    .argument('<REPLICA_DIR>', 'the replica')
    .option('--volume <NAME>', 'serve this volume (repeat; default: all)', collect, [])
    .option('--socket <PATH>', 'listen on this Unix socket (mode 0600)')
    .option('--listen <[HOST:]PORT>', 'listen on TCP instead (loopback unless HOST is given)')
    .option('--writable', 'take writes into a throw-away layer (sparse scratch files; the replica is never written), e.g. to boot a DR drill')
    .option('--scratch <DIR>', 'where the read cache and the --writable layer go (default REPLICA_DIR/scratch)')
    .option('--cache-size <SIZE>', 'keep up to SIZE of decompressed segments in a scratch file, so each is decompressed once (0: none)', '8G')
    .option('--keep-scratch', 'with --writable: leave the scratch files when the mount stops')
    .option('--no-prove', 'do not read a restore point whole in the background to prove it equal to the primary\'s digest of it')
    .option('--json', 'JSON lines on standard output: ready, each event, stopped'))))
    .action(async (dir: string, opts: MountCliOptions) => {
      if ((opts.socket === undefined) === (opts.listen === undefined)) {
        throw new JshipError('USAGE', 'jship mount needs one of --socket PATH and --listen [HOST:]PORT', { hint: 'e.g. jship mount /srv/replica --marker nightly --socket /run/jship-drill.sock' });
      }
      const listen: Listen = opts.listen !== undefined ? parseListen(opts.listen) : { socket: opts.socket as string };
      const point = pointFromOptions(opts);
      const wait = replicaWait('mount', opts.wait);
      if (!opts.writable && opts.keepScratch) throw new JshipError('USAGE', '--keep-scratch goes with --writable', { hint: 'add --writable to take writes into a throw-away layer' });
      const cacheBytes = opts.cacheSize === '0' ? 0 : parseSize(opts.cacheSize, '--cache-size');
      const keys = await keyRing(opts);
      const log = eventLog(opts);
      const mount = await PointMount.open(dir, {
        point, volumes: opts.volume, cacheBytes, ...(keys ? { keys } : {}),
        ...(opts.writable ? { writable: true } : {}), ...(opts.scratch !== undefined ? { scratchDir: opts.scratch } : {}), ...(opts.keepScratch ? { keepScratch: true } : {}),
        ...(wait ? { wait } : {}),
      });
      const server = new NbdServer(mount, log);
      let where: string;
      try {
        where = await server.listen(listen);
      } catch (e) {
        await mount.close();
        throw e;
      }
      const exports = mount.exports.map((x) => ({
        name: x.name,
        size: x.size,
        uri: 'socket' in listen ? `nbd+unix:///${encodeURIComponent(x.name)}?socket=${where}` : `nbd://${where}/${encodeURIComponent(x.name)}`,
      }));
      const p = mount.plan;
      const stopped = untilStopSignal('mount');
      emit(opts, { event: 'ready', ready: true, pid: process.pid, listening: where, point: p.point, seq: p.seq, ts: p.ts, writable: opts.writable === true, scratch: mount.scratch, exports }, () => [
        `serving ${p.point}${p.point.includes(`seq ${p.seq}`) ? '' : ` (seq ${p.seq})`} at ${formatTime(p.ts)}, ${opts.writable ? `with writes to a throw-away layer (${mount.scratch.join(', ')})` : 'read-only'} on ${where} (pid ${process.pid})`,
        ...exports.map((x) => `  ${x.name}  ${formatSize(x.size)}  ${x.uri}`),
        'stop with SIGTERM or Ctrl-C',
      ]);
      // A restore point or base completion is proved while it is served: read whole, compared with the primary's digest.
      const digest = opts.prove ? mount.digest : undefined;
      const proved = digest
        ? provePoint(digest, mount.point).then((proof) => {
          log({ event: 'proof', text: proofText(proof), ...proof });
          return proof.equal ? new Promise<never>(() => undefined) : 'not equal';
        }, (e: Error) => {
          log({ event: 'proof-failed', error: `could not prove the point: ${e.message}` });
          return new Promise<never>(() => undefined);
        })
        : new Promise<never>(() => undefined);
      const sig = await Promise.race([stopped, proved]);
      await server.close();
      await mount.close();
      if (sig === 'not equal') {
        process.exitCode = 1;
        emit(opts, { event: 'stopped', stopped: true, signal: null, reason: 'the point is not equal to the primary\'s: not served' }, () => ['stopped: the point read from the replica is NOT what the primary had (see above): not served']);
        return;
      }
      emit(opts, { event: 'stopped', stopped: true, signal: sig }, () => [`stopped (${sig})`]);
    });
}
