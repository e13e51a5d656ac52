// Journal append throughput: jship's write path (journal record + PVOL write,
// then a final flush) against dd writing the same bytes to a file with
// conv=fdatasync, at 4 KiB and 1 MiB writes.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGroup, openGroup } from '../dist/index.js';
import { MiB, SMOKE, scratch, timeCommand, timeAsync, median, mbps } from './lib.mjs';

const CASES = [
  { name: '4 KiB writes', block: 4096, total: (SMOKE ? 4 : 128) * MiB, depth: 32 },
  { name: '1 MiB writes', block: MiB, total: (SMOKE ? 16 : 512) * MiB, depth: 8 },
];

export async function benchAppend({ runs = SMOKE ? 1 : 3 } = {}) {
  const results = [];
  for (const c of CASES) {
    const { dir, cleanup } = scratch('append', { needMiB: ((runs + 2) * c.total) / MiB + 256 });
    try {
      const count = c.total / c.block;
      // The same bytes for both: a random 16 MiB pattern repeated (not compressible, not zero).
      const pattern = randomBytes(16 * MiB);
      const src = join(dir, 'src.bin');
      const chunks = [];
      for (let off = 0; off < c.total; off += pattern.length) chunks.push(pattern.subarray(0, Math.min(pattern.length, c.total - off)));
      writeFileSync(src, Buffer.concat(chunks));
      const jshipTimes = [];
      const ddTimes = [];
      for (let r = 0; r < runs; r++) {
        const g = join(dir, `g${r}`);
        await createGroup(g, { volumes: [{ name: 'v', extents: [{ path: join(dir, `v${r}.img`), size: c.total }] }], journalSize: c.total + 64 * MiB });
        const group = await openGroup(g, { checkpointIntervalMs: 0 });
        const secs = await timeAsync(async () => {
          let next = 0;
          const worker = async () => {
            while (next < count) {
              const i = next++;
              const off = (i * c.block) % pattern.length;
              await group.write(0, i * c.block, pattern.subarray(off, off + c.block));
            }
          };
          await Promise.all(Array.from({ length: c.depth }, worker));
          await group.flush();
        });
        await group.close();
        jshipTimes.push(secs);
        ddTimes.push(timeCommand('dd', [`if=${src}`, `of=${join(dir, `dd${r}.out`)}`, `bs=${c.block}`, 'conv=fdatasync', 'status=none']));
        timeCommand('rm', ['-rf', g, join(dir, `v${r}.img`), join(dir, `dd${r}.out`)]);
      }
      const j = median(jshipTimes);
      const d = median(ddTimes);
      results.push({
        bench: 'append',
        case: c.name,
        records: count,
        bytes: c.total,
        jship: { secs: j, recordsPerSec: count / j, mibPerSec: mbps(c.total, j) },
        peer: { name: 'dd conv=fdatasync', secs: d, mibPerSec: mbps(c.total, d) },
        ratio: d / j,
      });
    } finally {
      cleanup();
    }
  }
  return results;
}
