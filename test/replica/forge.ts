import { cpSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decompress } from 'zstd-napi';
import { scanFrame } from '../../src/core/zstd-frames.js';
import { FramePool } from '../../src/tape/frame-pool.js';
import type { TapeKey } from '../../src/tape/crypto.js';
import { LABEL_NAME, decodeLabel, encodeJson, type TapeLabel } from '../../src/tape/label.js';
import { decodeEntries } from '../../src/tape/tar-entry.js';
import { makeGroup, MiB, KiB } from '../helpers.js';
import { exportTo, writeMixed } from '../tape/helpers.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

/** The frames of a tape: [offset, length] each. */
export function frames(buf: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let off = 0; off < buf.length;) {
    const s = scanFrame(buf, off);
    if (s.kind !== 'frame') throw new Error(`no frame at ${off}`);
    out.push([off, s.length]);
    off += s.length;
  }
  return out;
}

/** Tape `a` with its frame number `i` (0: the label) replaced by frame `j` of tape `b`. */
export function spliceFrame(a: Buffer, i: number, b: Buffer, j = i): Buffer {
  const fa = frames(a)[i]!;
  const fb = frames(b)[j]!;
  return Buffer.concat([a.subarray(0, fa[0]), b.subarray(fb[0], fb[0] + fb[1]), a.subarray(fa[0] + fa[1])]);
}

export async function labelOfBytes(tape: Buffer): Promise<TapeLabel> {
  const [off, len] = frames(tape)[0]!;
  const [entry] = await decodeEntries(decompress(tape.subarray(off, off + len)), 'tape');
  return decodeLabel(entry!.content, 'label');
}

/** Tape `tape` with its label replaced by `edit(label)`, encoded as a writer would (a forger's tool). */
export async function relabel(tape: Buffer, edit: (l: TapeLabel) => Record<string, unknown>): Promise<Buffer> {
  const label = await labelOfBytes(tape);
  const pool = new FramePool({ threads: 1 });
  try {
    const { buf } = await pool.frame(LABEL_NAME, [encodeJson(edit(label))], { mtime: new Date() });
    const [off, len] = frames(tape)[0]!;
    return Buffer.concat([tape.subarray(0, off), buf, tape.subarray(off + len)]);
  } finally {
    await pool.close();
  }
}

/**
 * A copied group directory (a cloned VM, a test environment): the same
 * group id, its own volume files and journal. `dir/group` → `to/group`.
 */
export function cloneGroup(dir: string, to: string): string {
  cpSync(dir, to, { recursive: true });
  const g = join(to, 'group');
  for (const n of readdirSync(g).filter((x) => x.endsWith('.json'))) {
    writeFileSync(join(g, n), readFileSync(join(g, n), 'utf8').split(dir).join(to));
  }
  return g;
}

export const tapeFiles = (d: string): string[] => readdirSync(d).filter((n) => n.endsWith('.tar.zst')).sort().map((n) => join(d, n));

/** A group with volume a (1 MiB) and b (256 KiB), its base on tape 1 (in DIR/t) and some updates. */
export async function baseGroup(dir: string, opts: { key?: TapeKey } = {}): Promise<string> {
  const g = await makeGroup(dir, { a: 1 * MiB, b: 256 * KiB }, { journalSize: 16 * MiB, chunkSize: 64 * KiB });
  const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
  await writeMixed(group, 30, 1);
  await exportTo(group, join(dir, 't'), { base: true, ...(opts.key ? { key: opts.key } : {}) });
  await group.close();
  return g;
}

/** Writes `n` records (seeded) and exports them as the next tape into `to`, in 8 KiB segments. */
export async function nextTape(g: string, to: string, n: number, seed: number, opts: Parameters<typeof exportTo>[2] = {}): Promise<void> {
  const group = await openSiteGroup(g, { checkpointIntervalMs: 0 });
  await writeMixed(group, n, seed);
  await exportTo(group, to, { segmentBytes: 8 * KiB, ...opts });
  await group.close();
}
