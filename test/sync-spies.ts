import { mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { vi } from 'vitest';

/** Node's FileHandle prototype (not exported by name): where `sync` and `datasync` are spied on. */
export interface SyncMethods {
  sync(): Promise<void>;
  datasync(): Promise<void>;
}

export async function fileHandleProto(dir: string): Promise<SyncMethods> {
  mkdirSync(dir, { recursive: true });
  const h = await fsp.open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(h) as SyncMethods;
  await h.close();
  return proto;
}

/** Records every sync and datasync of any file handle, in order, with the handle (vi.restoreAllMocks ends it). */
export async function recordSyncs(dir: string): Promise<Array<{ op: keyof SyncMethods; h: unknown }>> {
  const proto = await fileHandleProto(dir);
  const calls: Array<{ op: keyof SyncMethods; h: unknown }> = [];
  for (const op of ['sync', 'datasync'] as const) {
    const real = proto[op];
    vi.spyOn(proto, op).mockImplementation(function (this: unknown) {
      calls.push({ op, h: this });
      return real.call(this);
    });
  }
  return calls;
}

/** The first datasync of any file handle fails with EIO (the disk lost a write); the rest run. Returns how many were called. */
export async function failFirstDatasync(dir: string): Promise<() => number> {
  const proto = await fileHandleProto(dir);
  const real = proto.datasync;
  let calls = 0;
  vi.spyOn(proto, 'datasync').mockImplementation(function (this: unknown) {
    calls++;
    return calls === 1 ? Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) : real.call(this);
  });
  return () => calls;
}
