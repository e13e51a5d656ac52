import { promises as fsp } from 'node:fs';
import tls from 'node:tls';
import { JshipError } from '../core/errors.js';

/**
 * The link's security: TLS 1.2 with a pre-shared key (RFC 4279) and an
 * ephemeral ECDH exchange (forward secrecy). Both sites hold the same
 * 32-byte key (GROUP_DIR/link.key, made by `jship init`); the PSK identity
 * is the group id, so a peer of another group fails the handshake before
 * any message is read. Without a key nothing is served.
 */
export const LINK_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305';

export async function readLinkKey(path: string): Promise<Buffer> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    throw new JshipError('LINK_AUTH', `the link key ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, {
      hint: 'jship init writes GROUP_DIR/link.key; copy it to the other site (like ack.key) and name it with --psk FILE. Without a key nothing is served',
    });
  }
  const t = text.trim();
  if (!/^[0-9a-f]{64}$/i.test(t)) {
    throw new JshipError('LINK_AUTH', `${path} is not a link key (64 hex characters)`, { hint: 'make one with `openssl rand -hex 32 > FILE` and give the same file to both sites' });
  }
  return Buffer.from(t, 'hex');
}

const COMMON = { ciphers: LINK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;

/**
 * Server options: `identityOk(identity)` says whether a client's group id is
 * acceptable (logged and refused otherwise).
 */
export function serverOptions(key: Buffer, identityOk: (identity: string) => boolean): tls.TlsOptions {
  return {
    ...COMMON,
    // A peer that does not finish the handshake is dropped after 10 s (Node's default: 120 s).
    handshakeTimeout: 10_000,
    pskIdentityHint: 'jship-link',
    pskCallback: (_socket, identity) => (identityOk(identity) ? key : null),
  };
}

export function clientOptions(key: Buffer, groupId: string): tls.ConnectionOptions {
  return {
    ...COMMON,
    pskCallback: () => ({ psk: key, identity: groupId }),
    // No certificate: the PSK authenticates both ends.
    checkServerIdentity: () => undefined,
  };
}

/** Why a TLS handshake failed, in words an operator can act on. */
export function handshakeFailure(e: Error & { code?: string }): string {
  switch (e.code) {
    case 'ERR_SSL_PSK_IDENTITY_NOT_FOUND':
    case 'ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY':
      return 'the peer belongs to another group (PSK identity refused)';
    case 'ERR_SSL_CIPHER_OPERATION_FAILED':
    case 'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC':
    case 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC':
      return 'the peer holds another link key (authentication failed)';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_HTTP_REQUEST':
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_NO_SHARED_CIPHER':
      return 'the peer does not speak TLS with a pre-shared key (not a jship link peer, or no credentials)';
    default:
      return `TLS handshake failed: ${e.message.split('\n')[0] ?? e.code}`;
  }
}
