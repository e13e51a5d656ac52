import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { readJournalSuperblock } from '../../src/journal/journal-volume.js';
import { RecordType } from '../../src/core/record.js';
import { applyToImages } from '../../src/core/replay.js';
import { tempDir, makeGroup, MiB } from '../helpers.js';

const CHILD = fileURLToPath(new URL('./crash-child.mjs', import.meta.url));
const BLOCK = 4096;

/** Runs the child until a random moment after it started writing, then SIGKILLs it. Returns the writes known flushed. */
async function runAndKill(dir: string, mode: string, seed: number, killAfterMs: number): Promise<number> {
  const child = spawn(process.execPath, [CHILD, dir, mode, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) resolve();
    });
    child.on('exit', () => reject(new Error(`child exited early: ${err}`)));
  });
  await new Promise((r) => setTimeout(r, killAfterMs));
  child.kill('SIGKILL');
  await exited;
  const flushed = [...out.matchAll(/^F (\d+)$/gm)].map((m) => Number(m[1]));
  return flushed.length > 0 ? (flushed[flushed.length - 1] as number) : 0;
}

describe('crash safety (SIGKILL at random moments)', () => {
  const dir = tempDir();

  for (const mode of ['keep', 'purge'] as const) {
    it(`recovers every flushed write, gapless, with the PVOL agreeing with the journal, journal-out never past the applied pointer (${mode})`, async () => {
      const trials = 12;
      let redone = 0n;
      for (let t = 0; t < trials; t++) {
        const g = await makeGroup(`${dir}/${mode}-${t}`, { a: 4 * MiB }, { journalSize: mode === 'purge' ? 2 * MiB : 64 * MiB });
        let flushedTotal = 0;
        // Kill it twice in a row: recovery itself must leave a group that survives the next crash.
        for (let k = 0; k < 2; k++) {
          const flushed = await runAndKill(g, mode, 1000 * t + k + 1, 20 + Math.floor(Math.random() * 250));
          flushedTotal = Math.max(flushedTotal, flushed);
          // As the crash left it: nothing purged that the PVOL did not hold durably.
          const sb = await readJournalSuperblock(`${g}/journal.jv`);
          expect(sb.outSeq, 'journal-out is at most one past the applied pointer').toBeLessThanOrEqual(sb.appliedSeq + 1n);
          const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
          redone += group.journal.writtenSeq - 1n - sb.appliedSeq;
          try {
            const pvol = await group.volumes[0]!.read(0, 4 * MiB);
            const image = Buffer.alloc(4 * MiB);
            const lastWriter = new Map<number, number>();
            let expectSeq = group.journal.outSeq;
            let lastTs = 0n;
            const seen = new Set<number>();
            for await (const r of group.records()) {
              expect(r.header.seq).toBe(expectSeq++);
              expect(r.header.timestamp).toBeGreaterThan(lastTs);
              lastTs = r.header.timestamp;
              if (r.header.type !== RecordType.Update) continue;
              applyToImages([image], r.header, r.data);
              for (let o = 0; o < r.header.length; o += BLOCK) {
                const it = r.data.readUInt32LE(o);
                seen.add(it);
                lastWriter.set((r.header.offset + o) / BLOCK, it);
              }
            }
            expect(expectSeq).toBe(group.journal.writtenSeq);
            if (mode === 'keep') {
              // Nothing purged: every flushed write is in the journal, and replaying it gives the PVOL.
              for (let i = 0; i < flushedTotal; i++) expect(seen.has(i), `write ${i} of ${flushedTotal} flushed`).toBe(true);
              expect(image.equals(pvol)).toBe(true);
            }
            // Each block last written by a journaled record holds that record's data on the PVOL.
            for (const [block, it] of lastWriter) expect(pvol.readUInt32LE(block * BLOCK), `block ${block}`).toBe(it);
          } finally {
            await group.close();
          }
        }
      }
      // The PVOL trailed the journal at the kills: recovery had records to write again.
      expect(redone).toBeGreaterThan(0n);
    }, 180_000);
  }
});
