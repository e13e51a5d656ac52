import type { Command } from 'commander';
import { formatDuration } from '../core/check.js';
import { JshipError } from '../core/errors.js';
import { formatTime, parseDuration } from '../core/time.js';
import type { RunningHook } from '../io/hooks.js';
import { runDrill } from '../replica/drill.js';
import { keyRing, withKeyOptions, type KeyCliOptions } from './key-options.js';
import { emit, eventLog, type CommonOptions } from './output.js';
import { addReplicaWait, replicaWait } from './waiting.js';
import { pointFromOptions, withPointOptions } from './restore.js';

interface DrillCliOptions extends CommonOptions, KeyCliOptions {
  wait?: string;
  volume: string[];
  until?: string;
  exclusive?: boolean;
  marker?: string;
  seq?: string;
  exec?: string;
  timeout: string;
  scratch?: string;
}

const collect = (v: string, all: string[]): string[] => [...all, v];

export function registerDrill(program: Command): void {
  withKeyOptions(withPointOptions(addReplicaWait(program
    .command('drill')
    .description('a DR drill: mount a point writable (a throw-away layer), run a command against its NBD exports, discard the layer, record the result in the replica (exit 1 when the command fails)')
    .argument('<REPLICA_DIR>', 'the replica')
    .requiredOption('--exec <CMD>', 'the check to run (sh -c); the exports\' URIs are in JSHIP_NBD_URI_<VOLUME> and listed in the JSON file $JSHIP_NBD_EXPORTS')
    .option('--timeout <DURATION>', 'stop the command (its whole process group) if it runs longer; the drill then fails', '1h')
    .option('--volume <NAME>', 'mount this volume (repeat; default: all)', collect, [])
    .option('--scratch <DIR>', 'where the throw-away layer goes (default REPLICA_DIR/scratch)')
    .option('--json', 'print one JSON object: the recorded drill'))))
    .action(async (dir: string, opts: DrillCliOptions) => {
      const point = pointFromOptions(opts);
      const wait = replicaWait('drill', opts.wait);
      const timeoutMs = Number(parseDuration(opts.timeout, '--timeout') / 1_000_000n);
      if (timeoutMs <= 0) throw new JshipError('USAGE', '--timeout must be more than 0', { hint: 'e.g. --timeout 20m' });
      if ((opts.exec ?? '').trim() === '') throw new JshipError('USAGE', '--exec needs a command', { hint: 'e.g. --exec "qemu-img compare -f raw -F raw /srv/expected.img \\"$JSHIP_NBD_URI_DB\\""' });
      const keys = await keyRing(opts);
      // The NBD server's events are the drill's log, on stderr: standard output is the drill's result alone.
      const drillLog = eventLog({ json: false });
      // An interrupt stops the command (recorded as interrupted), and the mount and its layer go as after any drill.
      let running: RunningHook | undefined;
      let interrupted = false;
      const onSignal = (): void => {
        interrupted = true;
        running?.stop();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const { record: r, path, exports } = await runDrill(dir, {
          point, command: opts.exec as string, timeoutMs, log: drillLog,
          ...(opts.volume.length > 0 ? { volumes: opts.volume } : {}), ...(keys ? { keys } : {}), ...(opts.scratch !== undefined ? { scratchDir: opts.scratch } : {}),
          ...(wait ? { wait } : {}),
          started: (cmd) => {
            running = cmd;
            if (interrupted) cmd.stop();
          },
        });
        const how = r.ok ? 'passed' : r.timedOut ? `FAILED: stopped after ${opts.timeout}` : r.interrupted ? 'FAILED: interrupted' : r.code !== null ? `FAILED: exit ${r.code}` : `FAILED: killed by ${r.signal}`;
        emit(opts, { ...r, recorded: path, exports }, () => [
          `drill of ${r.point}${r.point.includes(`seq ${r.seq}`) ? '' : ` (seq ${r.seq})`} at ${formatTime(BigInt(r.ts))}: ${how} in ${formatDuration(r.durationMs / 1000)}`,
          ...exports.map((x) => `  ${x.name}  ${x.env}`),
          ...(!r.ok && r.output ? ['its last output:', ...r.output.split('\n').slice(-10).map((l) => `  ${l}`)] : []),
          `recorded in ${path}`,
        ]);
        if (!r.ok) process.exitCode = 1;
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
    });
}
