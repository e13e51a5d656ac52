import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { JournalGroup } from '../../src/journal/journal-group.js';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { RecordType } from '../../src/core/record.js';
import { DirDestination, type TapeOutput } from '../../src/tape/destination.js';
import { deferred } from '../../src/core/deferred.js';
import { exportGroup, type ExportOptions } from '../../src/tape/export.js';
import { readTape, type TapeRecord } from '../../src/tape/tape-reader.js';
import { fileChunks } from '../../src/tape/tape-file.js';
import { makeGroup, KiB, MiB } from '../helpers.js';

/** A record as tests compare them: header fields and data as hex-free equality. */
export interface Rec {
  type: RecordType;
  seq: bigint;
  volume: number;
  offset: number;
  length: number;
  data: Buffer;
}

export function rec(r: TapeRecord | { header: TapeRecord['header']; data: Buffer }): Rec {
  return { type: r.header.type, seq: r.header.seq, volume: r.header.volume, offset: r.header.offset, length: r.header.length, data: Buffer.from(r.data) };
}

/**
 * Writes `count` mixed records (random data, zeros written, zeroes, trims), seeded;
 * with `unaligned`, a third of them start and end anywhere (1..20 000 bytes).
 */
export async function writeMixed(group: JournalGroup, count: number, seed = 1, opts: { unaligned?: boolean } = {}): Promise<void> {
  let x = seed;
  const next = (n: number): number => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % n;
  };
  for (let i = 0; i < count; i++) {
    const v = next(group.volumes.length);
    const size = group.volumes[v]!.size;
    const unaligned = opts.unaligned === true && next(3) === 0;
    const len = unaligned ? 1 + next(20_000) : 512 * (1 + next(32));
    const off = unaligned ? next(size - len) : next(Math.floor((size - len) / 512)) * 512;
    const k = next(10);
    if (k < 7) await group.write(v, off, randomBytes(len));
    else if (k < 8) await group.write(v, off, Buffer.alloc(len));
    else if (k < 9) await group.writeZeroes(v, off, len);
    else await group.trim(v, off, len);
  }
}

export async function journalRecords(group: JournalGroup, from?: bigint): Promise<Rec[]> {
  const out: Rec[] = [];
  for await (const r of group.records(from)) out.push(rec(r));
  return out;
}

/** Every record of a tape file, read and verified. */
export async function tapeRecords(path: string, opts: Parameters<typeof readTape>[1] extends infer O ? Partial<O> : never = {}): Promise<{ updates: Rec[]; base: Rec[] }> {
  const updates: Rec[] = [];
  const base: Rec[] = [];
  for await (const item of readTape(fileChunks(path), { where: path, ...opts })) {
    if (item.type !== 'segment') continue;
    for (const r of item.records) (r.header.type === RecordType.Base ? base : updates).push(rec(r));
  }
  return { updates, base };
}

export async function groupWithData(dir: string, records = 200, opts: { journalSize?: number } = {}): Promise<{ g: string; group: JournalGroup }> {
  const g = await makeGroup(dir, { a: 2 * MiB, b: 512 * KiB }, { journalSize: opts.journalSize ?? 16 * MiB, chunkSize: 64 * KiB });
  const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
  await writeMixed(group, records);
  return { g, group };
}

export async function exportTo(group: JournalGroup, dir: string, opts: Partial<ExportOptions> = {}): ReturnType<typeof exportGroup> {
  return exportGroup(group, { destination: new DirDestination(dir), ...opts });
}

export const tapesDir = (dir: string): string => join(dir, 'tapes');

/** A directory destination that says when a tape is opened (`opened`), and holds its writes until `gate` resolves. */
export class GatedDir extends DirDestination {
  readonly opened = deferred();
  readonly #gate: Promise<void>;
  constructor(dir: string, gate: Promise<void>) {
    super(dir);
    this.#gate = gate;
  }

  override async open(serial: number): Promise<TapeOutput> {
    const out = await super.open(serial);
    this.opened.resolve();
    const gate = this.#gate;
    return {
      write: async (c) => { await gate; await out.write(c); },
      commit: (name, before, tape) => out.commit(name, before, tape),
      abort: () => out.abort(),
    };
  }
}
