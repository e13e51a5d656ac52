import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

const SCRIPT = new URL('../../scripts/s3-peer.sh', import.meta.url).pathname;
export const ACCESS = 'jshipaccesskey';
export const SECRET = 'jshipsecretkey';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * A real S3 store for a test file: Ceph's radosgw on loopback, started by
 * scripts/s3-peer.sh (it fails loudly when it cannot start; never skipped).
 * Each test file that needs one names its own directory and ports, so that
 * files running side by side (and the gateway stops of the fault tests) do
 * not meet.
 */
export class S3Peer {
  readonly endpoint: string;
  readonly client: S3Client;
  readonly #env: NodeJS.ProcessEnv;

  constructor(readonly dir: string, ports: { rgw: number; mon: number; monV1: number }) {
    this.endpoint = `http://127.0.0.1:${ports.rgw}`;
    this.#env = { ...process.env, ACCESS_KEY: ACCESS, SECRET_KEY: SECRET, RGW_PORT: String(ports.rgw), MON_PORT: String(ports.mon), MON_V1_PORT: String(ports.monV1) };
    this.client = new S3Client({ region: 'us-east-1', endpoint: this.endpoint, forcePathStyle: true, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET } });
  }

  /** What a jship process needs in its environment to reach the store. */
  get awsEnv(): Record<string, string> {
    return { AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_ENDPOINT_URL: this.endpoint, AWS_REGION: 'us-east-1' };
  }

  /** Runs a command of the script and waits for it (start, stop, stop-rgw, start-rgw). */
  run(cmd: 'start' | 'stop' | 'stop-rgw' | 'start-rgw'): void {
    const r = spawnSync(SCRIPT, [cmd, this.dir, 'memstore'], { encoding: 'utf8', env: this.#env });
    if (r.status !== 0) throw new Error(`scripts/s3-peer.sh ${cmd} failed (${r.status}): ${r.stdout}\n${r.stderr}\n(.ci/run installs radosgw ceph-mon ceph-osd curl)`);
  }

  /** Starts the gateway again without waiting (resolves when it answers). */
  startRgwLater(): Promise<unknown> {
    return new Promise((res) => { spawn(SCRIPT, ['start-rgw', this.dir], { stdio: 'ignore', env: this.#env }).once('exit', res); });
  }

  /** Stops the daemons, then removes the store's directory (its data and logs): a run leaves nothing behind. */
  stop(): void {
    this.run('stop');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async start(buckets: string[]): Promise<void> {
    this.run('start');
    for (const b of buckets) await this.client.send(new CreateBucketCommand({ Bucket: b }));
  }
}
