// Child of crash.test.ts: writes to a group in a loop, flushing now and then,
// and prints "F n" after each flush (writes 0..n-1 are then durable).
// Writes are answered once journaled and the PVOL follows (as under serve);
// checkpoints run every 256 KiB journaled and at random moments, so the
// applied pointer trails the journal by a varying amount.
// The parent kills it with SIGKILL at a random moment.
import { openGroup } from '../../dist/index.js';

const [dir, mode, seedText] = process.argv.slice(2);
let seed = Number(seedText);
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const BLOCK = 4096;
const group = await openGroup(dir, { checkpointIntervalMs: 0, checkpointBytes: 256 * 1024, replyAfterJournal: true });
const blocks = Math.floor(group.volumes[0].size / BLOCK);
process.stdout.write('READY\n');
let done = 0;
for (let round = 0; round < 100000; round++) {
  const batch = [];
  for (let i = 0; i < 8; i++) {
    const it = done + i;
    const len = BLOCK * (1 + Math.floor(rand() * 3));
    const block = Math.floor(rand() * (blocks - 3));
    const data = Buffer.alloc(len, it & 0xff);
    for (let o = 0; o < len; o += BLOCK) data.writeUInt32LE(it, o);
    batch.push(group.write(0, block * BLOCK, data));
  }
  const results = await Promise.all(batch);
  done += 8;
  if (rand() < 0.1) void group.checkpoint();
  if (round % 4 === 3) {
    await group.flush();
    process.stdout.write(`F ${done}\n`);
    if (mode === 'purge' && round % 8 === 7) {
      const last = results[results.length - 1].seq;
      await group.purge(last - 20n);
    }
  }
}
