import { randomBytes } from 'node:crypto';
import { openSync, closeSync, promises as fsp, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileAtomic, writeFully, writeFullySync } from '../../src/io/files.js';
import { tempDir } from '../helpers.js';

/**
 * Large writes into the page cache cost the kernel about twice the system
 * time of 1 MiB ones on these machines (docs/BENCHMARKS.md, session 17):
 * every write hands it 1 MiB at most (WRITE_PIECE), and the file holds every byte.
 */
describe('writeFully', () => {
  const dir = tempDir();
  const MiB = 1024 * 1024;
  const data = randomBytes(3 * MiB + 12345);

  it('writes a large buffer in writes of 1 MiB at most, each where it belongs', async () => {
    const h = await fsp.open(join(dir, 'f'), 'w');
    const lengths: number[] = [];
    const write = h.write.bind(h) as (b: Uint8Array, off: number, len: number, pos: number) => Promise<{ bytesWritten: number }>;
    // Every write the helper makes, counted, then made.
    const counted = Object.assign(Object.create(h) as fsp.FileHandle, {
      write: (b: Uint8Array, off: number, len: number, pos: number) => {
        lengths.push(len);
        return write(b, off, len, pos);
      },
    });
    await writeFully(counted, data, 7);
    await h.close();
    expect(lengths).toEqual([MiB, MiB, MiB, 12345]);
    const back = readFileSync(join(dir, 'f'));
    expect(back.length).toBe(data.length + 7);
    expect(back.subarray(7).equals(data)).toBe(true);
  });

  it('writes the same on the calling thread', () => {
    const fd = openSync(join(dir, 'g'), 'w');
    writeFullySync(fd, data, 0);
    closeSync(fd);
    expect(readFileSync(join(dir, 'g')).equals(data)).toBe(true);
  });
});

describe('writeFileAtomic', () => {
  const dir = tempDir();

  it('leaves the file whole and nothing beside it; what a writer killed before its rename left goes once it is an hour old', async () => {
    const path = join(dir, 'state.json');
    const old = new Date(Date.now() - 2 * 3600_000);
    // Left by writers killed midway: one long ago, one just now (its writer may still be renaming it).
    writeFileSync(join(dir, '.state.json.0123456789ab.tmp'), '{"half');
    utimesSync(join(dir, '.state.json.0123456789ab.tmp'), old, old);
    writeFileSync(join(dir, '.state.json.ba9876543210.tmp'), '{"half');
    // Not its to remove: another file's, and a name only alike.
    writeFileSync(join(dir, '.other.json.0123456789ab.tmp'), 'x');
    utimesSync(join(dir, '.other.json.0123456789ab.tmp'), old, old);
    writeFileSync(join(dir, '.state.json.notes.tmp'), 'x');
    utimesSync(join(dir, '.state.json.notes.tmp'), old, old);
    await writeFileAtomic(path, '{"format":1}\n');
    expect(readFileSync(path, 'utf8')).toBe('{"format":1}\n');
    // Before, every one stayed for ever.
    expect(readdirSync(dir).sort()).toEqual(['.other.json.0123456789ab.tmp', '.state.json.ba9876543210.tmp', '.state.json.notes.tmp', 'state.json']);
  });
});

