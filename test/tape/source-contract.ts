import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';

import type { TapeSource } from '../../src/tape/tape-source.js';
import { verifyTapes } from '../../src/tape/verify.js';

/**
 * What every tape source must do, the reading half of the destination
 * contract (destination-contract.ts): hand back a tape byte for byte, its
 * size, any inclusive byte range (a source that can be read more than once),
 * and every golden tape (test/fixtures/tapes/) must verify through it
 * exactly as the golden test expects — damaged ones with the same damage.
 * A backend is given a tape's bytes and its name and returns a source
 * reading them from where the backend keeps them.
 */
export interface SourceUnderTest {
  source: TapeSource;
  /** Read once, from its start (a pipe, a drive): no ranges, no second read. */
  once: boolean;
}

const FIXTURES = new URL('../fixtures/tapes/', import.meta.url).pathname;
const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8')) as Record<string, { verify: Record<string, unknown> }>;

/** What a verify report says that must stay the same (paths and hashes aside): the golden test's summary. */
export function verifySummary(v: Awaited<ReturnType<typeof verifyTapes>>[number]): Record<string, unknown> {
  return {
    ok: v.ok, serial: v.label?.serial ?? null, link: v.label?.link ?? null, segments: v.segments, records: v.records,
    firstSeq: v.firstSeq?.toString() ?? null, lastSeq: v.lastSeq?.toString() ?? null, error: v.error?.code ?? null,
    intact: v.error ? { segments: v.error.segmentsIntact, records: v.error.recordsIntact, lastGoodSeq: v.error.lastGoodSeq } : null,
  };
}

async function readAll(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

export function sourceContract(name: string, make: (bytes: Buffer, file: string) => Promise<SourceUnderTest>): void {
  const plainName = readdirSync(FIXTURES).find((f) => f.startsWith('plain-')) as string;
  const plain = readFileSync(join(FIXTURES, plainName));

  it(`${name}: hands back a tape byte for byte, and says its size`, async () => {
    const { source, once } = await make(plain, plainName);
    expect(await source.size()).toBe(once ? -1 : plain.length);
    expect((await readAll(source.chunks())).equals(plain)).toBe(true);
    // Read once: a second read is refused, not an empty tape.
    if (once) expect(() => source.chunks()).toThrow(/read once/);
  });

  it(`${name}: any inclusive byte range (where it can be read more than once)`, async () => {
    const { source, once } = await make(plain, plainName);
    if (once) {
      expect(() => source.chunks(1, 10)).toThrow(/read once/);
      return;
    }
    const n = plain.length;
    for (const [start, end] of [[0, 0], [0, n - 1], [n - 1, n - 1], [1000, 5000], [n - 513, n - 1], [4095, 4096]] as Array<[number, number]>) {
      expect((await readAll(source.chunks(start, end))).equals(plain.subarray(start, end + 1)), `${start}..${end}`).toBe(true);
    }
  });

  it(`${name}: every golden tape verifies through it as the golden test expects`, async () => {
    for (const f of ['plain-', 'link-', 'foreign-', 'truncated', 'flipped-segment', 'bad-trailer']) {
      const file = readdirSync(FIXTURES).find((x) => x.startsWith(f)) as string;
      const { source } = await make(readFileSync(join(FIXTURES, file)), file);
      const [v] = await verifyTapes([source]);
      expect(EXPECTED[file]?.verify, `${file} through ${name}`).toMatchObject(verifySummary(v!));
    }
  });
}
