import { promises as fsp } from 'node:fs';
import type { Server } from 'node:net';
import { dirname } from 'node:path';
import { JshipError } from '../core/errors.js';

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
  if ('socket' in where) {
    // Node reports a socket in a missing directory as EACCES: say what is wrong instead.
    const dir = dirname(where.socket);
    const st = await fsp.stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) {
      throw new JshipError('USAGE', `cannot listen on ${where.socket}: ${dir} ${st ? 'is not a directory' : 'does not exist'}`, { hint: 'give a socket path in an existing directory (or create the directory first)' });
    }
  }
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

export interface HostPort {
  host: string;
  port: number;
}

/** HOST:PORT, [IPv6]:PORT or PORT (loopback). */
export function parseHostPort(text: string, flag: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new JshipError('USAGE', `${flag} ${JSON.stringify(text)} is not HOST:PORT`, { hint: `e.g. ${flag} 192.0.2.10:7070, ${flag} [::1]:7070, or ${flag} 7070 for loopback` });
  }
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** A Unix socket PATH (anything with a slash) or [HOST:]PORT (loopback when no host). */
export function parseListenAddress(text: string, flag: string): { socket: string } | HostPort {
  return text.includes('/') ? { socket: text } : parseHostPort(text, flag);
}
