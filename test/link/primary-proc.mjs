// A primary for the crash tests: opens GROUP_DIR, serves the link on PORT,
// and writes random blocks until SIGTERM (or SIGKILL). One JSON line on
// stdout when ready. Usage: node primary-proc.mjs GROUP_DIR PORT SEED
import { randomBytes } from 'node:crypto';
import { openGroup, LinkPrimary, readLinkKey } from '../../dist/index.js';

const [dir, port, seed] = process.argv.slice(2);
const group = await openGroup(dir);
const key = await readLinkKey(`${dir}/link.key`);
const link = await LinkPrimary.start(group, { listen: { host: '127.0.0.1', port: Number(port) }, key, log: () => undefined, maxTapeBytes: 96 * 1024, timeoutMs: 5000 });
process.stdout.write(`${JSON.stringify({ ready: true, address: link.address })}\n`);
let x = Number(seed) || 1;
const next = (n) => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
let stopping = false;
process.on('SIGTERM', () => { stopping = true; });
while (!stopping) {
  const v = next(group.volumes.length);
  const size = group.volumes[v].size;
  const len = 512 * (1 + next(16));
  const off = next(Math.floor((size - len) / 512)) * 512;
  if (next(10) < 9) await group.write(v, off, randomBytes(len));
  else await group.writeZeroes(v, off, len);
  if (next(20) === 0) await new Promise((r) => setTimeout(r, 5));
}
await link.stop();
await group.close();
process.stdout.write(`${JSON.stringify({ stopped: true })}\n`);
