// The S3 vault: upload and download of a 1 GiB tape against `rclone copy` of
// the same file to the same endpoint (Ceph radosgw on loopback, bluestore,
// started by scripts/s3-peer.sh), and the peak RSS of `jship export --to s3://`
// writing a tape larger than 1 GiB. jship's transfers run in a process of their
// own with the launcher's node flags (bench/s3-transfer.mjs); both download the
// object jship uploaded; the order alternates round by round.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { s3Sources } from '../dist/s3/s3-source.js';
import { MiB, SMOKE, scratch, timeCommand, median, mbps, runJship, filledGroup, inTurn, launcherFlags } from './lib.mjs';

const PEER = new URL('../scripts/s3-peer.sh', import.meta.url).pathname;
const TRANSFER = new URL('./s3-transfer.mjs', import.meta.url).pathname;
// A smoke run (under npm test, beside the S3 tests on the default ports) gets ports of its own and a store in memory.
const PORTS = SMOKE ? { RGW_PORT: '7500', MON_PORT: '3320', MON_V1_PORT: '6809' } : {};
const ENDPOINT = `http://127.0.0.1:${PORTS.RGW_PORT ?? 7480}`;
const STORE = SMOKE ? 'memstore' : 'bluestore';
const SIZE_MIB = Number(process.env.JSHIP_BENCH_S3_MIB ?? 1152);
const KEYS = { ACCESS_KEY: 'jshipaccesskey', SECRET_KEY: 'jshipsecretkey' };

function peer(cmd, dir) {
  const r = spawnSync(PEER, [cmd, dir, STORE], { encoding: 'utf8', env: { ...process.env, ...KEYS, ...PORTS } });
  if (r.status !== 0) throw new Error(`s3-peer.sh ${cmd}: ${r.stdout}${r.stderr}`);
}

const tapeText = (bytes) => (bytes >= 1024 * MiB ? `${(bytes / 1024 / MiB).toFixed(1)} GiB` : `${(bytes / MiB).toFixed(0)} MiB`);

export async function benchS3({ runs = SMOKE ? 1 : 2 } = {}) {
  // The journal (twice the tape) and its copy, the tape, the store's four copies of it, the downloads.
  const { dir, cleanup } = scratch('s3', { needMiB: 11 * SIZE_MIB + 512 });
  const ceph = join(dir, 'ceph');
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: KEYS.ACCESS_KEY, AWS_SECRET_ACCESS_KEY: KEYS.SECRET_KEY, AWS_ENDPOINT_URL: ENDPOINT, AWS_REGION: 'us-east-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    RCLONE_CONFIG_VAULT_TYPE: 's3', RCLONE_CONFIG_VAULT_PROVIDER: 'Ceph', RCLONE_CONFIG_VAULT_ENDPOINT: ENDPOINT,
    RCLONE_CONFIG_VAULT_ACCESS_KEY_ID: KEYS.ACCESS_KEY, RCLONE_CONFIG_VAULT_SECRET_ACCESS_KEY: KEYS.SECRET_KEY,
  });
  const s3 = new S3Client({ region: 'us-east-1', endpoint: ENDPOINT, forcePathStyle: true });
  // rclone's S3 backend fails on AWS_CA_BUNDLE with a custom HTTP transport; the endpoint is plain http anyway.
  const rcloneEnv = { ...process.env };
  delete rcloneEnv.AWS_CA_BUNDLE;
  const empty = async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: 'bench' }));
    for (const o of r.Contents ?? []) await s3.send(new DeleteObjectCommand({ Bucket: 'bench', Key: o.Key }));
  };
  try {
    peer('start', ceph);
    await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
    // A tape of 1.1 GiB of random records (incompressible: every byte goes over the wire).
    // A journal twice the data (an export with no server running is one tape either way).
    const { g } = await filledGroup(dir, SIZE_MIB, () => randomBytes(MiB), { journalMiB: 2 * SIZE_MIB + 64 });
    spawnSync('cp', ['-a', g, `${g}.orig`]);
    runJship(['export', g, '--to', `${dir}/tapes/`]);
    const tape = join(dir, 'tapes', readdirSync(join(dir, 'tapes'))[0]);
    const bytes = statSync(tape).size;
    const up = [], upPeer = [], down = [], downPeer = [];
    // jship's transfers in a process of their own with the launcher's node flags (before session 16: in this one, with none).
    const transfer = (...args) => {
      const r = spawnSync(process.execPath, [...launcherFlags(), TRANSFER, ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`s3-transfer.mjs ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
      return Number(r.stdout.trim());
    };
    for (let r = 0; r < runs; r++) {
      inTurn(r,
        () => up.push(transfer('up', tape, `s3://bench/j${r}/`)),
        () => upPeer.push(timeCommand('rclone', ['copy', tape, `vault:bench/p${r}/`], { env: rcloneEnv })));
    }
    // Both download the same object, the one jship uploaded (before session 16 each its own: rclone's 5 MiB parts
    // lie in the store otherwise than jship's 8 MiB ones, and rclone read jship's 1.5-2.1x as fast as its own).
    // Read once untimed first, after all the uploads, then five rounds. Before session 17 each round read an
    // object uploaded just before, and whichever side went first read it cold, right after the upload: medians of
    // 6.0 s (jship) and 3.9 s (rclone) where the same downloads took 2.6-3.1 and 2.3-2.5 s by hand.
    const [obj] = await s3Sources(`s3://bench/j${runs - 1}/`);
    // The set-up's files (the group, its copy, the tape: about 6 GiB) written back before the downloads write theirs.
    spawnSync('sync');
    // One download untimed, into a file (removed): whichever download came first paid 2-3 system-seconds more
    // for page-cache memory the VM's host had to back first (jship, first in round 0: 4.2-5.3 s in every run of
    // sessions 17 and 18, 1.9-2.5 s in later rounds; rclone too, second in that round, in one run). Before
    // session 18 this was `rclone cat --discard`, which writes no file.
    const warm = join(dir, 'warm');
    timeCommand('rclone', ['copy', `vault:bench/${obj.key}`, warm], { env: rcloneEnv });
    spawnSync('rm', ['-rf', warm]);
    for (let r = 0; r < (SMOKE ? 1 : 5); r++) {
      const local = join(dir, `down${r}.tar.zst`);
      const pdir = join(dir, `pdown${r}`);
      inTurn(r,
        () => {
          down.push(transfer('down', obj.where, local));
          spawnSync('rm', ['-f', local]);
        },
        () => {
          downPeer.push(timeCommand('rclone', ['copy', `vault:bench/${obj.key}`, pdir], { env: rcloneEnv }));
          spawnSync('rm', ['-rf', pdir]);
        });
    }
    // Peak RSS of an import of that object (its ranges read into buffers handed back since session 18).
    const imported = runJship(['import', join(dir, 'replica'), obj.where], { json: true });
    await empty();
    // Peak RSS of the whole export of that 1.1 GiB of journal straight to the store.
    spawnSync('rm', ['-rf', g]);
    spawnSync('cp', ['-a', `${g}.orig`, g]);
    const rss = runJship(['export', g, '--to', 's3://bench/rss/'], { json: true });
    const results = [
      // `each`: every round's seconds, in the order run (the ranges BENCHMARKS.md records).
      { bench: 's3', case: `upload ${tapeText(bytes)} tape`, jship: { secs: median(up), mibPerSec: mbps(bytes, median(up)), each: up }, peer: { name: 'rclone copy', secs: median(upPeer), mibPerSec: mbps(bytes, median(upPeer)), each: upPeer }, ratio: median(upPeer) / median(up) },
      { bench: 's3', case: `download ${tapeText(bytes)} tape`, jship: { secs: median(down), mibPerSec: mbps(bytes, median(down)), each: down }, peer: { name: 'rclone copy', secs: median(downPeer), mibPerSec: mbps(bytes, median(downPeer)), each: downPeer }, ratio: median(downPeer) / median(down) },
      { bench: 's3', case: `export --to s3:// of a ${(rss.out.tapeBytes / MiB).toFixed(0)} MiB tape`, jship: { rssMiB: rss.rssMiB, secs: rss.secs }, limitMiB: 256 },
      { bench: 's3', case: `import s3:// of a ${tapeText(bytes)} tape`, jship: { rssMiB: imported.rssMiB, secs: imported.secs }, limitMiB: 256 },
    ];
    return results;
  } finally {
    s3.destroy();
    try { peer('stop', ceph); } finally { cleanup(); }
  }
}
