import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { expect, it } from 'vitest';

import type { TapeDestination, TapeOutput } from '../../src/tape/destination.js';
import { tapeFileName } from '../../src/tape/tape-name.js';
import { verifyTapes } from '../../src/tape/verify.js';
import { tempDir } from '../helpers.js';

/**
 * What every tape destination must do (Litestream runs one such suite,
 * `RunWithReplicaClient`, against every replica client). A backend gives a
 * fresh destination per test, how to read a committed tape back by its
 * location, and what is visible there now.
 */
export interface DestinationUnderTest {
  dest: TapeDestination;
  /** The committed tape's bytes, read back from where the destination put it. */
  read: (location: string) => Promise<Buffer>;
  /** The tapes visible at the destination (names; nothing half written, no leftovers). */
  visible: () => Promise<string[]>;
  /** A stream cannot take back bytes it handed on: abort only stops. */
  abortLeavesNothing: boolean;
}

const FIXTURES = new URL('../fixtures/tapes/', import.meta.url).pathname;
const fixture = (prefix: string): Buffer => readFileSync(join(FIXTURES, readdirSync(FIXTURES).find((f) => f.startsWith(prefix)) as string));

/** What the tape writer hands commit: the tape's SHA-256 and size (a link sends them in TAPE_END). */
const described = (bytes: Buffer): { sha256: string; bytes: number } => ({ sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length });

/** Writes `bytes` in uneven chunks: 1 byte, 7, 4 KiB + 1, the rest. */
async function writeUneven(out: TapeOutput, bytes: Buffer): Promise<void> {
  let off = 0;
  for (const n of [1, 7, 4097]) {
    await out.write(bytes.subarray(off, off + n));
    off += n;
  }
  await out.write(bytes.subarray(off));
}

export function destinationContract(name: string, make: () => Promise<DestinationUnderTest>): void {
  const next = scratch();
  const checkDir = (): string => {
    const d = next();
    mkdirSync(d, { recursive: true });
    return d;
  };
  it(`${name}: a tape written in uneven chunks is committed whole, reads back byte for byte and verifies`, async () => {
    const d = await make();
    const tape = fixture('plain-');
    const out = await d.dest.open(1, 1n);
    await writeUneven(out, tape);
    const location = await out.commit(tapeFileName(1, 1n, 28n), undefined, described(tape));
    const back = await d.read(location);
    expect(back.equals(tape)).toBe(true);
    // What came back is a tape standing on its own.
    const copy = join(checkDir(), 'read-back.tar.zst');
    writeFileSync(copy, back);
    const [v] = await verifyTapes([copy]);
    expect(v?.ok, JSON.stringify(v?.error)).toBe(true);
    expect((await d.visible()).length).toBe(1);
  });

  it(`${name}: a chunk's memory is the writer's again once its write resolves (the tape keeps the bytes written)`, async () => {
    const d = await make();
    const tape = fixture('plain-');
    const out = await d.dest.open(1, 1n);
    // One buffer for every chunk, overwritten as soon as each write resolves (the tape writer reuses a frame's memory so).
    const chunk = Buffer.alloc(4097);
    for (let off = 0; off < tape.length; off += chunk.length) {
      const n = tape.copy(chunk, 0, off, off + chunk.length);
      await out.write(chunk.subarray(0, n));
      chunk.fill(0xee);
    }
    const location = await out.commit(tapeFileName(1, 1n, 28n), undefined, described(tape));
    expect((await d.read(location)).equals(tape)).toBe(true);
  });

  it(`${name}: an aborted tape leaves nothing behind`, async () => {
    const d = await make();
    const out = await d.dest.open(1, 1n);
    await writeUneven(out, fixture('plain-').subarray(0, 20_000));
    await out.abort();
    if (d.abortLeavesNothing) expect(await d.visible()).toEqual([]);
  });

  it(`${name}: tapes one after another are all there, in chain order (where it holds more than one)`, async () => {
    const d = await make();
    if (!d.dest.splittable) return;
    const set = readdirSync(FIXTURES).filter((f) => f.startsWith('set-')).sort();
    const locations: string[] = [];
    for (const [i, f] of set.entries()) {
      const out = await d.dest.open(i + 1, BigInt(i * 14 + 1));
      await writeUneven(out, readFileSync(join(FIXTURES, f)));
      const bytes = readFileSync(join(FIXTURES, f));
      locations.push(await out.commit(f.slice('set-'.length), undefined, described(bytes)));
    }
    for (const [i, f] of set.entries()) expect((await d.read(locations[i] as string)).equals(readFileSync(join(FIXTURES, f)))).toBe(true);
    const seen = await d.visible();
    expect(seen).toEqual([...seen].sort());
    expect(seen.length).toBe(set.length);
  });
}

/** A scratch directory per call, for the file-based backends. */
export function scratch(): () => string {
  const dir = tempDir();
  let n = 0;
  return () => join(dir, String(++n));
}
