// --bwlimit 20M held over more than 10 s: an export of 256 MiB of
// incompressible records to a directory, and a link pull of the same, each
// against rclone copying a file of the same size with --bwlimit 20M in the
// same run. Reported: achieved MiB/s of each and the ratio; the goal is
// 20 MiB/s ± 10 % for jship (DESIGN/issue: rclone's meaning of RATE).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, SMOKE, scratch, filledGroup, timeCommand, runJship } from './lib.mjs';

const JSHIP = new URL('../bin/jship', import.meta.url).pathname;
const RATE = '20M';
const SIZE_MIB = SMOKE ? 8 : 256;

function rclone(dir) {
  const src = join(dir, 'peer-src');
  mkdirSync(src, { recursive: true });
  spawnSync('dd', ['if=/dev/urandom', `of=${join(src, 'blob')}`, 'bs=1M', `count=${SIZE_MIB}`], { stdio: 'ignore' });
  const secs = timeCommand('rclone', ['copy', '--bwlimit', RATE, src, join(dir, 'peer-dst')]);
  return { name: `rclone --bwlimit ${RATE}`, secs, mibPerSec: SIZE_MIB / secs };
}

export async function benchBwlimit() {
  const { dir, cleanup } = scratch('bwlimit', { needMiB: 4 * SIZE_MIB + 256 });
  try {
    const { g } = await filledGroup(dir, SIZE_MIB, () => randomBytes(MiB));
    const peer = rclone(dir);
    const e = runJship(['export', g, '--to', `${join(dir, 'tapes')}/`, '--bwlimit', RATE], { json: true });
    const exportMiB = e.out.tapeBytes / MiB;
    const out = [{ bench: 'bwlimit', case: `export ${RATE}`, jship: { mibPerSec: exportMiB / e.secs, secs: e.secs }, peer, ratio: (exportMiB / e.secs) / peer.mibPerSec }];
    // The same records over the link (pulled once the export above left the journal empty: write them again).
    const { g: g2 } = await filledGroup(join(dir, 'l'), SIZE_MIB, () => randomBytes(MiB));
    const srv = spawn(JSHIP, ['link', 'serve', g2, '--listen', '127.0.0.1:0', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    const at = await new Promise((resolve) => srv.stdout.on('data', (c) => { text += c; const m = /"listening":"([^"]+)"/.exec(text); if (m) resolve(m[1]); }));
    const rep = join(dir, 'rep');
    const p = runJship(['link', 'pull', rep, '--from', at, '--psk', join(g2, 'link.key'), '--once', '--bwlimit', RATE]);
    srv.kill('SIGTERM');
    await new Promise((r) => srv.once('exit', r));
    const pulledMiB = spawnSync('du', ['-sb', join(rep, 'tapes')], { encoding: 'utf8' }).stdout.split('\t')[0] / MiB;
    out.push({ bench: 'bwlimit', case: `link pull ${RATE}`, jship: { mibPerSec: pulledMiB / p.secs, secs: p.secs }, peer, ratio: (pulledMiB / p.secs) / peer.mibPerSec });
    return out;
  } finally {
    cleanup();
  }
}
