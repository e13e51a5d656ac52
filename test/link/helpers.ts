import net from 'node:net';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CreateGroupOptions } from '../../src/journal/group-create.js';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { groupPaths } from '../../src/journal/group-files.js';
import { readLinkKey } from '../../src/link/link-tls.js';
import { jshipProc, makeGroup } from '../helpers.js';
import { restoreReplica } from '../../src/replica/restore.js';
import type { LinkEvent } from '../../src/link/primary-session.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

/** Collects link events (and prints them when JSHIP_TEST_VERBOSE is set). */
export function events(): { log: (e: LinkEvent) => void; all: LinkEvent[] } {
  const all: LinkEvent[] = [];
  return { all, log: (e) => { all.push(e); if (process.env.JSHIP_TEST_VERBOSE) console.log(JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))); } };
}

/** Copies of the PVOL files now, with the time of the last record written. */
export async function snapshot(group: JournalGroup, dir: string, tag: string): Promise<{ ts: bigint; seq: bigint; files: Record<string, string> }> {
  await group.flush();
  const st = await group.status();
  const files: Record<string, string> = {};
  for (const v of st.volumes) {
    const to = join(dir, `${tag}-${v.name}.img`);
    copyFileSync(v.extents[0]!.path, to);
    files[v.name] = to;
  }
  return { ts: st.time.last!, seq: st.sequence.last!, files };
}

/** Restores the replica into files at `ts` and checks each volume against the snapshot. */
export async function expectRestoresTo(replica: string, dir: string, snap: { ts: bigint; seq: bigint; files: Record<string, string> }, tag: string, by: 'time' | 'seq' = 'time'): Promise<void> {
  const out = join(dir, `restored-${tag}`);
  const point = by === 'time' ? { kind: 'until' as const, ts: snap.ts, exclusive: false } : { kind: 'seq' as const, seq: snap.seq };
  await restoreReplica(replica, { point, targets: [{ path: `${out}/` }] });
  for (const [name, file] of Object.entries(snap.files)) {
    const got = readFileSync(join(out, `${name}.img`));
    const want = readFileSync(file);
    if (!got.equals(want)) throw new Error(`volume ${name} restored at ${tag} differs from the snapshot`);
  }
}

/** A group (DIR/group, volumes a 1 MiB and b 256 KiB unless told) opened, with its link key. */
export async function linkedGroup(dir: string, sizes: Record<string, number> = { a: 1024 * 1024, b: 256 * 1024 }, opts: Partial<CreateGroupOptions> & { existingFiles?: boolean } = {}): Promise<{ g: string; group: JournalGroup; key: Buffer }> {
  const g = await makeGroup(dir, sizes, { journalSize: 16 * 1024 * 1024, chunkSize: 64 * 1024, ...opts });
  const group = await openSiteGroup(g);
  return { g, group, key: await readLinkKey(groupPaths(g).linkKey) };
}

/** Starts a long-running `jship link …` with --json and waits for its ready line. */
/** `jship link …` running with --json until stopped (see jshipProc). */
export function linkProc(...args: string[]): ReturnType<typeof jshipProc> {
  return jshipProc('link', ...args);
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}


/** A TCP port free on the loopback now (for a receiver or server a test starts). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
