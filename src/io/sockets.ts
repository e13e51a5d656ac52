import { promises as fsp } from 'node:fs';
import type { Server } from 'node:net';

/** Longest Unix socket path Linux takes (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

export function fitsSocketPath(path: string): boolean {
  return Buffer.byteLength(path) <= MAX_SOCKET_PATH;
}

/**
 * Starts `server` listening on a Unix socket path (then made mode 0600:
 * file permissions are the access control) or on HOST:PORT. Rejects with
 * the listen error instead of emitting it.
 */
export async function listenOn(server: Server, where: { socket: string } | { host: string; port: number }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('socket' in where) server.listen(where.socket, done);
    else server.listen(where.port, where.host, done);
  });
  if ('socket' in where) await fsp.chmod(where.socket, 0o600);
}
