import type { OnReadOpts } from 'node:net';
import tls from 'node:tls';
import { JshipError } from '../core/errors.js';
import { Channel } from './channel.js';
import { FrameReads } from './frame-reads.js';
import { clientOptions, handshakeFailure } from './link-tls.js';
import { formatHostPort, type HostPort } from '../io/sockets.js';

/** Connects and authenticates (TLS-PSK; identity: the group id, or "new" for a replica not created yet). */
export function dial(to: HostPort, key: Buffer, identity: string, timeoutMs = 10_000): Promise<Channel> {
  const where = formatHostPort(to);
  return new Promise<Channel>((resolve, reject) => {
    const reads = new FrameReads();
    // tls.connect takes onread (nodejs/node#35753); @types/node leaves it out.
    const options: tls.ConnectionOptions & { onread: OnReadOpts } = { host: to.host, port: to.port, ...clientOptions(key, identity), onread: reads.onread };
    const socket = tls.connect(options);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new JshipError('LINK_UNREACHABLE', `${where} did not answer within ${timeoutMs / 1000} s`, { hint: 'check that the other site runs jship link and that the network lets the port through' }));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.setKeepAlive(true, 10_000);
      socket.setNoDelay(true);
      resolve(new Channel(socket, where, reads));
    });
    const onError = (e: Error & { code?: string }): void => {
      clearTimeout(timer);
      const tlsFailure = e.code?.startsWith('ERR_SSL') === true;
      reject(tlsFailure
        ? new JshipError('LINK_AUTH', `${where}: ${handshakeFailure(e)}`, { hint: 'both sites need the same link key (--psk FILE, the primary\'s GROUP_DIR/link.key) and the same group' })
        : new JshipError('LINK_UNREACHABLE', `${where} cannot be reached: ${e.message}`, { hint: 'check that the other site runs jship link and that the network lets the port through' }));
    };
    socket.once('error', onError);
  });
}
