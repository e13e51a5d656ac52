// One S3 transfer by jship's own code, in a process of its own started with
// the launcher's node flags (bin/jship), as the CLI runs it:
//   node FLAGS s3-transfer.mjs up FILE s3://BUCKET/PREFIX/   (the path of export --to s3://)
//   node FLAGS s3-transfer.mjs down s3://BUCKET/KEY FILE     (the path of import s3://)
// Prints the seconds the transfer took (the process's start-up excluded, as before session 16).
import { promises as fsp } from 'node:fs';
import { S3Destination } from '../dist/s3/s3-destination.js';
import { s3Sources } from '../dist/s3/s3-source.js';
import { fileChunks } from '../dist/tape/tape-file.js';
import { SMALL_WRITE, writeFullySync } from '../dist/io/files.js';

const [what, from, to] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
if (what === 'up') {
  const out = await new S3Destination(to).open(1, 1n);
  for await (const c of fileChunks(from)) await out.write(c);
  await out.commit('tape');
} else if (what === 'down') {
  const [src] = await s3Sources(from);
  // Written as import writes its copy of a tape: 32 KiB writes, each range's buffer handed back once written
  // (before session 18 writeFully's 1 MiB writes on the thread pool; before session 17 a write stream's 8 MiB).
  const w = await fsp.open(to, 'w');
  let at = 0;
  for await (const c of src.chunks()) {
    writeFullySync(w.fd, c, at, SMALL_WRITE);
    at += c.length;
    src.giveBack(c);
  }
  await w.close();
} else {
  throw new Error(`usage: s3-transfer.mjs up FILE URL | down URL FILE (not ${what})`);
}
process.stdout.write(`${Number(process.hrtime.bigint() - t0) / 1e9}\n`);
// The SDK's idle sockets would hold the process open for a while.
process.exit(0);
