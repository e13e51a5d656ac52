import { createHash } from 'node:crypto';
import { promises as fsp, constants } from 'node:fs';
import { ZSTD_MAGIC, frameSizeProblem, scanFrame } from '../core/zstd-frames.js';
import { writeFully } from '../io/files.js';
import { encodeParity, reconstructData } from '../core/reed-solomon.js';
import { decodeParityHeader, parityFrame, parityShards, type GroupFrame, type ParityFrameRef, type ParityHeader } from './parity.js';
import { findTrailerFrame } from './tape-file.js';
import type { TapeSource } from './tape-source.js';
import { frameEntries } from './tar-entry.js';

/** What parity can do for a tape. */
export interface RepairReport {
  /**
   * `intact`: nothing is damaged; `repairable`: every damaged or missing
   * frame is rebuilt from parity (byte for byte: the tape's SHA-256 is the
   * original's); `lost`: some damage is beyond the parity; `no-parity`: the
   * tape has no parity, or its trailer (which lists the parity) is lost.
   */
  state: 'intact' | 'repairable' | 'lost' | 'no-parity';
  /** Entries rebuilt (jship-label.json, segments/…, parity/…). */
  rebuilt: string[];
  /** Entries that could not be rebuilt. */
  lost: string[];
  /** The parity share the tape was written with, and the bytes of its parity frames. */
  percent: number | null;
  parityBytes: number;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const MAX_CANDIDATES = 64;

/**
 * Checks a tape's frames against its parity and, where some are damaged or
 * missing (bit flips, zeroed or cut-out bytes), rebuilds them: each frame is
 * found by its hash at its place, or — bytes having gone missing or come in
 * — at another frame start nearby. Writes the whole repaired tape to `out`
 * when given and every frame was rebuilt. The trailer is not protected: it
 * tells where the parity is (docs/FORMAT.md "Parity").
 */
export async function repairTape(src: TapeSource, out?: string): Promise<RepairReport> {
  const report: RepairReport = { state: 'no-parity', rebuilt: [], lost: [], percent: null, parityBytes: 0 };
  const size = await src.size();
  if (size <= 0) return report;
  const found = await findTrailerFrame(src);
  const parity = found?.trailer.parity;
  if (!found || !parity || parity.frames.length === 0) return report;
  report.percent = parity.percent;
  report.parityBytes = parity.frames.reduce((n, r) => n + r.length, 0);
  const starts = await frameStarts(src);
  const isStart = new Set(starts);
  const h = await fsp.open(src.where, constants.O_RDONLY);
  const readAt = async (at: number, length: number): Promise<Buffer> => {
    const b = Buffer.alloc(length);
    const { bytesRead } = await h.read(b, 0, length, at);
    return b.subarray(0, bytesRead);
  };
  // Bytes cut out (or put in) move every frame after them: `shift` follows where the frames are found.
  let shift = 0;
  const locate = async (f: { offset: number; length: number; sha256: string }): Promise<Buffer | null> => {
    const tryAt = async (at: number): Promise<Buffer | null> => {
      if (at < 0 || at + f.length > size) return null;
      const b = await readAt(at, f.length);
      return b.length === f.length && sha256(b) === f.sha256 ? b : null;
    };
    const here = f.offset + shift;
    const b = await tryAt(here);
    if (b) return b;
    // Elsewhere: at a frame start followed, f.length bytes on, by another one (or the trailer).
    const candidates = starts.filter((q) => q !== here && (isStart.has(q + f.length) || q + f.length === found.offset))
      .sort((x, y) => Math.abs(x - here) - Math.abs(y - here)).slice(0, MAX_CANDIDATES);
    for (const q of candidates) {
      const c = await tryAt(q);
      if (c) {
        shift = q - f.offset;
        return c;
      }
    }
    return null;
  };
  const tmp = out !== undefined ? `${out}.partial` : undefined;
  const w = tmp !== undefined ? await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600) : undefined;
  let pos = 0;
  const emit = async (b: Buffer): Promise<void> => {
    if (w && report.lost.length === 0) await writeFully(w, b, pos);
    pos += b.length;
  };
  try {
    let groupStart = 0;
    for (const [i, ref] of parity.frames.entries()) {
      const at = ref.offset + shift;
      // The parity frame comes after its group: where it is found says where the next group starts, not this one.
      const before = shift;
      const pf = await locate(ref);
      const after = shift;
      shift = before;
      const header = pf ? await parityContent(pf, ref, src.where) : undefined;
      if (header && (header.h.frames[0]?.offset !== groupStart || ends(header.h.frames) !== ref.offset)) {
        report.lost.push(ref.name); // a parity frame of another tape, or out of place
        break;
      }
      let frames: { data: Buffer[]; parity: Buffer } | null;
      if (header) {
        frames = await rebuildGroup(header.h, header.shards, locate, report);
      } else {
        // Where the group lies is not known without its header: where it should, else at a frame start nearby.
        const span = ref.offset - groupStart;
        const expected = at - span;
        const tries = [expected, ...starts.filter((q) => q !== expected).sort((x, y) => Math.abs(x - expected) - Math.abs(y - expected)).slice(0, 16)];
        frames = null;
        for (const q of tries) {
          frames = await regroup(i + 1, groupStart, ref, await readAt(q, span), parity.percent);
          if (frames) {
            shift = q - groupStart;
            break;
          }
        }
        if (frames) report.rebuilt.push(ref.name);
        else report.lost.push(ref.name, `the frames before ${ref.name}`);
      }
      if (!frames) break;
      if (pf) shift = after;
      for (const b of frames.data) await emit(b);
      await emit(pf ?? frames.parity);
      groupStart = ref.offset + ref.length;
    }
    // The trailer frame follows the last parity frame, then what padding a medium added (not kept).
    if (report.lost.length === 0) await emit(await readAt(found.offset, found.length));
    report.state = report.lost.length > 0 ? 'lost' : report.rebuilt.length > 0 ? 'repairable' : 'intact';
    if (w) {
      await w.sync();
      await w.close();
      if (report.lost.length === 0) await fsp.rename(tmp as string, out as string);
      else await fsp.rm(tmp as string, { force: true });
    }
  } catch (e) {
    await w?.close().catch(() => undefined);
    if (tmp !== undefined) await fsp.rm(tmp, { force: true });
    throw e;
  } finally {
    await h.close();
  }
  return report;
}

const ends = (frames: GroupFrame[]): number => {
  const last = frames[frames.length - 1];
  return last ? last.offset + last.length : -1;
};

async function parityContent(frame: Buffer, ref: ParityFrameRef, where: string): Promise<{ h: ParityHeader; shards: Array<Buffer | null> } | undefined> {
  try {
    const [json, bin] = await frameEntries(frame, `${where} ${ref.name}`);
    if (!json || !bin || json.name !== ref.name) return undefined;
    const h = decodeParityHeader(json.content, `${where} ${ref.name}`);
    if (bin.content.length !== h.parity.length * h.shardBytes) return undefined;
    const shards = h.parity.map((sha, j) => {
      const s = bin.content.subarray(j * h.shardBytes, (j + 1) * h.shardBytes);
      return sha256(s) === sha ? s : null;
    });
    return { h, shards };
  } catch {
    return undefined;
  }
}

/** A group's frames, those damaged or missing rebuilt from its parity shards; null when more are lost than parity can give back. */
async function rebuildGroup(h: ParityHeader, shards: Array<Buffer | null>, locate: (f: GroupFrame) => Promise<Buffer | null>, report: RepairReport): Promise<{ data: Buffer[]; parity: Buffer } | null> {
  const data: Array<Buffer | null> = [];
  for (const f of h.frames) data.push(await locate(f));
  const missing = data.flatMap((d, i) => (d ? [] : [i]));
  if (missing.length > 0) {
    const rebuilt = await reconstructData(data, shards, h.shardBytes);
    for (const i of missing) {
      const f = h.frames[i] as GroupFrame;
      const b = rebuilt?.[i]?.subarray(0, f.length);
      if (b && sha256(b) === f.sha256) {
        data[i] = Buffer.from(b);
        report.rebuilt.push(f.entry);
      } else {
        report.lost.push(f.entry);
      }
    }
    if (report.lost.length > 0) return null;
  }
  return { data: data as Buffer[], parity: Buffer.alloc(0) };
}

/**
 * A group whose parity frame is lost: its frames are read where they lie
 * (from the last group's end to this parity frame's place) and its parity
 * frame is made again from them — the same bytes, or the group is lost.
 */
async function regroup(number: number, groupStart: number, ref: ParityFrameRef, region: Buffer, percent: number): Promise<{ data: Buffer[]; parity: Buffer } | null> {
  const frames: GroupFrame[] = [];
  const data: Buffer[] = [];
  try {
    for (let off = 0; off < region.length;) {
      const s = scanFrame(region, off);
      if (s.kind !== 'frame' || frameSizeProblem(s)) throw new Error('not a frame');
      const b = region.subarray(off, off + s.length);
      const [entry] = await frameEntries(b, ref.name);
      if (!entry) throw new Error('no entry');
      frames.push({ entry: entry.name, offset: groupStart + off, length: s.length, sha256: sha256(b) });
      data.push(b);
      off += s.length;
    }
    const longest = Math.max(...frames.map((f) => f.length));
    const shards = await encodeParity(data, longest, parityShards(frames.length, percent));
    const parity = await parityFrame({ format: 'jship-parity', version: 1, number, shardBytes: longest, frames, parity: shards.map(sha256) }, shards);
    return sha256(parity) === ref.sha256 ? { data, parity } : null;
  } catch {
    return null;
  }
}

/** Offsets of every zstd frame magic in the tape (frame starts, and rarely a chance match inside a frame). */
async function frameStarts(src: TapeSource): Promise<number[]> {
  const magic = Buffer.alloc(4);
  magic.writeUInt32LE(ZSTD_MAGIC);
  const out: number[] = [];
  let base = 0;
  let carry = Buffer.alloc(0);
  for await (const c of src.chunks()) {
    const buf = carry.length > 0 ? Buffer.concat([carry, c]) : c;
    const start = base - carry.length;
    for (let i = buf.indexOf(magic); i >= 0; i = buf.indexOf(magic, i + 1)) out.push(start + i);
    base += c.length;
    carry = Buffer.from(buf.subarray(Math.max(0, buf.length - 3)));
  }
  return [...new Set(out)].sort((a, b) => a - b);
}
