import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JshipError, param } from '../core/errors.js';
import type { EventLog } from '../core/events.js';
import { runHook, type RunningHook } from '../io/hooks.js';
import { NbdServer } from '../nbd/server.js';
import type { KeyRing } from '../tape/crypto.js';
import { recordDrill, type DrillRecord } from './drill-log.js';
import type { ReplicaWait } from './replica.js';
import { PointMount } from './mount.js';
import type { PointSpec } from './restore-plan.js';

export interface DrillOptions {
  point: PointSpec;
  volumes?: string[];
  keys?: KeyRing;
  command: string;
  timeoutMs: number;
  scratchDir?: string;
  log?: EventLog;
  /** Called with the running command once it started (to stop it at an interrupt). */
  started?: (cmd: RunningHook) => void;
  /** How long to wait for the replica while another command uses it (while the point is planned). */
  wait?: ReplicaWait;
}

export interface DrillExport {
  name: string;
  size: number;
  uri: string;
  /** The environment variable that holds the URI. */
  env: string;
}

/** The environment variable a volume's NBD URI is given in: JSHIP_NBD_URI_ and its name in capitals, other characters as "_". */
export function uriVariable(volume: string): string {
  return `JSHIP_NBD_URI_${volume.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/**
 * A disaster-recovery drill: the point mounted writable (a throw-away layer;
 * the replica is never written), the operator's command run against its NBD
 * exports (a Unix socket of its own; URIs in JSHIP_NBD_URI_<VOLUME> and in
 * the JSON file JSHIP_NBD_EXPORTS), then the mount stopped, the layer
 * discarded and the result recorded in the replica (drills/).
 */
export async function runDrill(dir: string, opts: DrillOptions): Promise<{ record: DrillRecord; path: string; exports: DrillExport[] }> {
  const work = await fsp.mkdtemp(join(tmpdir(), 'jship-drill-'));
  try {
    const mount = await PointMount.open(dir, {
      point: opts.point, writable: true,
      ...(opts.volumes ? { volumes: opts.volumes } : {}), ...(opts.keys ? { keys: opts.keys } : {}), ...(opts.scratchDir !== undefined ? { scratchDir: opts.scratchDir } : {}),
      ...(opts.wait ? { wait: opts.wait } : {}),
    });
    const startedAt = new Date();
    let result;
    let exports: DrillExport[] = [];
    try {
      exports = mount.exports.map((x) => ({ name: x.name, size: x.size, uri: '', env: uriVariable(x.name) }));
      const clash = exports.find((x, i) => exports.findIndex((y) => y.env === x.env) !== i);
      if (clash) {
        throw new JshipError('USAGE', `two volumes would share the variable ${clash.env}`, { hint: `drill them one at a time with ${param('volumes')} NAME (the JSON file JSHIP_NBD_EXPORTS names every export exactly)` });
      }
      const server = new NbdServer(mount, opts.log ?? (() => {}));
      const socket = await server.listen({ socket: join(work, 'nbd.sock') });
      try {
        for (const x of exports) x.uri = `nbd+unix:///${encodeURIComponent(x.name)}?socket=${socket}`;
        const p = mount.plan;
        const listFile = join(work, 'exports.json');
        await fsp.writeFile(listFile, `${JSON.stringify({ point: p.point, seq: p.seq.toString(), ts: p.ts.toString(), exports }, null, 2)}\n`);
        const env: Record<string, string> = { JSHIP_NBD_EXPORTS: listFile, JSHIP_DRILL_POINT: p.point, JSHIP_DRILL_SEQ: p.seq.toString(), JSHIP_DRILL_SOCKET: socket };
        for (const x of exports) env[x.env] = x.uri;
        const cmd = runHook(opts.command, opts.timeoutMs, env);
        opts.started?.(cmd);
        result = await cmd.done;
      } finally {
        await server.close();
      }
    } finally {
      await mount.close();
    }
    const finishedAt = new Date();
    const p = mount.plan;
    const record: DrillRecord = {
      format: 1, point: p.point, seq: p.seq.toString(), ts: p.ts.toString(), volumes: exports.map((x) => x.name),
      command: opts.command, startedAt: startedAt.toISOString(), finishedAt: finishedAt.toISOString(), durationMs: finishedAt.getTime() - startedAt.getTime(),
      code: result.code, signal: result.signal, timedOut: result.timedOut, interrupted: result.interrupted, ok: result.ok, output: result.output,
    };
    return { record, path: await recordDrill(mount.replicaDir, record), exports };
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}
