import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { JshipError, param } from '../core/errors.js';

export const ALGORITHM = 'aes-256-gcm';
const NONCE = 12;
const TAG = 16;

/** A segment encryption key and its public id (the first 8 bytes of its SHA-256, hex). */
export interface TapeKey {
  key: Buffer;
  keyId: string;
}

/** Reads a key file: 32 bytes raw, or 64 hex characters (a trailing newline is fine). */
export async function readKeyFile(path: string): Promise<TapeKey> {
  let raw: Buffer;
  try {
    raw = await fsp.readFile(path);
  } catch (e) {
    throw new JshipError('USAGE', `cannot read key file ${path}: ${(e as Error).message}`, { hint: 'give the path of a 32-byte key file (e.g. made with: head -c 32 /dev/urandom > tape.key)' });
  }
  const text = raw.toString('latin1').trim();
  let key: Buffer;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (raw.length === 32) key = raw;
  else {
    throw new JshipError('USAGE', `key file ${path} holds ${raw.length} bytes, not a 256-bit key`, {
      hint: 'a key file is 32 raw bytes or 64 hex characters (head -c 32 /dev/urandom > tape.key)',
    });
  }
  return { key, keyId: createHash('sha256').update(key).digest('hex').slice(0, 16) };
}

/**
 * The keys a reader holds (`--key FILE`, repeatable, and `--key-dir DIR`):
 * each tape is opened with the key whose id its label names, so a chain
 * whose key was rotated reads across the change.
 */
export class KeyRing {
  readonly #keys = new Map<string, TapeKey>();

  constructor(keys: Iterable<TapeKey>) {
    for (const k of keys) this.#keys.set(k.keyId, k);
  }

  get ids(): string[] {
    return [...this.#keys.keys()];
  }

  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  /** The key with this id, or an error naming the id that is missing. */
  need(keyId: string, where: string): TapeKey {
    const k = this.#keys.get(keyId);
    if (k) return k;
    throw missingKey(keyId, where, this);
  }
}

/** The error for an encrypted tape whose key is not among those given (none, or others). */
export function missingKey(keyId: string, where: string, ring: KeyRing | undefined): JshipError {
  const hint = `give the key with id ${keyId}: --key FILE (repeatable) or --key-dir DIR; a key's id is the first 16 hex digits of the SHA-256 of its 32 bytes`;
  if (!ring || ring.ids.length === 0) return new JshipError('TAPE_KEY_REQUIRED', `${where} is encrypted (key id ${keyId}); no key was given`, { hint });
  return new JshipError('TAPE_AUTH_FAILED', `${where} was encrypted with key id ${keyId}; the key${ring.ids.length > 1 ? 's' : ''} given ${ring.ids.length > 1 ? 'have ids' : 'has id'} ${ring.ids.join(', ')}`, { hint });
}

/** Reads the key files named and every file of the key directories named (each must be a key); undefined when none is named. */
export async function readKeyRing(files: readonly string[], dirs: readonly string[] = []): Promise<KeyRing | undefined> {
  if (files.length === 0 && dirs.length === 0) return undefined;
  const paths = [...files];
  for (const d of dirs) {
    let names: string[];
    try {
      names = (await fsp.readdir(d, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
    } catch (e) {
      throw new JshipError('USAGE', `cannot read key directory ${d}: ${(e as Error).message}`, { hint: 'name a directory that holds key files (32 raw bytes or 64 hex characters each)' });
    }
    if (names.length === 0) throw new JshipError('USAGE', `key directory ${d} holds no files`, { hint: `put the key files there, or name them with ${param('keyFiles')} FILE` });
    paths.push(...names.map((n) => `${d}/${n}`));
  }
  return new KeyRing(await Promise.all(paths.map(readKeyFile)));
}

/**
 * Encrypts a segment payload: nonce + ciphertext + tag; `aad` binds it to its
 * header and group. The nonce is random (12 bytes); `nonce` replaces it for
 * golden test tapes only — a nonce repeated under one key breaks AES-GCM.
 */
export function encryptPayload(key: TapeKey, plain: Buffer, aad: Buffer, nonce: Buffer = randomBytes(NONCE)): Buffer {
  if (nonce.length !== NONCE) throw new Error(`a nonce is ${NONCE} bytes`);
  const c = createCipheriv(ALGORITHM, key.key, nonce);
  c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

/** Decrypts and authenticates; any change of a byte (or a wrong key) is TAPE_BAD_KEY or TAPE_DAMAGED. */
export function decryptPayload(key: TapeKey, sealed: Buffer, aad: Buffer, where: string): Buffer {
  if (sealed.length < NONCE + TAG) throw new JshipError('TAPE_DAMAGED', `${where}: encrypted payload too short`);
  const d = createDecipheriv(ALGORITHM, key.key, sealed.subarray(0, NONCE));
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  try {
    return Buffer.concat([d.update(sealed.subarray(NONCE, sealed.length - TAG)), d.final()]);
  } catch (e) {
    throw new JshipError('TAPE_AUTH_FAILED', `${where}: authentication failed: the key is wrong or the segment was modified`, {
      hint: 'check that the key file is the one the tape was written with (its key id is in the label); if it is, this copy of the tape was altered',
      cause: e,
    });
  }
}

export const ENCRYPTION_OVERHEAD = NONCE + TAG;
