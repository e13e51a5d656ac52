import { createHmac, timingSafeEqual } from 'node:crypto';
import { JshipError } from './errors.js';

/**
 * An acknowledgement (`--keep-until-ack`): the secondary says it has stored
 * every record up to `seq` contiguously. Authenticated with HMAC-SHA256 under
 * the group's ack key, so that nothing else can make the primary purge.
 */
export interface Ack {
  format: 'jship-ack';
  version: 1;
  groupId: string;
  seq: string;
  createdAt: string;
  hmac: string;
}

function mac(key: Buffer, groupId: string, seq: string, createdAt: string): string {
  return createHmac('sha256', key).update(`jship-ack:v1:${groupId}:${seq}:${createdAt}`).digest('hex');
}

export function makeAck(key: Buffer, groupId: string, seq: bigint, now = new Date()): Ack {
  const createdAt = now.toISOString();
  return { format: 'jship-ack', version: 1, groupId, seq: seq.toString(), createdAt, hmac: mac(key, groupId, seq.toString(), createdAt) };
}

/** Parses and authenticates an acknowledgement; returns the sequence number it covers. */
export function verifyAck(text: string, key: Buffer, groupId: string, where: string): bigint {
  let v: Partial<Ack>;
  try {
    v = JSON.parse(text) as Partial<Ack>;
  } catch {
    throw new JshipError('ACK_INVALID', `${where} is not an acknowledgement (not JSON)`, { hint: 'give the file written by `jship import --ack-out`' });
  }
  if (v.format !== 'jship-ack' || v.version !== 1 || typeof v.seq !== 'string' || !/^\d{1,20}$/.test(v.seq) || typeof v.hmac !== 'string' || typeof v.createdAt !== 'string' || typeof v.groupId !== 'string') {
    throw new JshipError('ACK_INVALID', `${where} is not a jship acknowledgement`, { hint: 'give the file written by `jship import --ack-out`' });
  }
  if (v.groupId !== groupId) {
    throw new JshipError('ACK_INVALID', `${where} acknowledges group ${v.groupId}, not this group (${groupId})`, { hint: 'the acknowledgement came from a replica of another group' });
  }
  const expect = Buffer.from(mac(key, groupId, v.seq, v.createdAt), 'hex');
  const got = Buffer.from(v.hmac, 'hex');
  if (got.length !== expect.length || !timingSafeEqual(got, expect)) {
    throw new JshipError('ACK_INVALID', `${where}: the signature does not match this group's ack key`, {
      hint: 'the file was altered, or the importer used another key (it must use a copy of GROUP_DIR/ack.key)',
    });
  }
  return BigInt(v.seq);
}

/** Reads an ack key file (64 hex characters, as `jship init` writes it). */
export function parseAckKey(text: string, where: string): Buffer {
  const t = text.trim();
  if (!/^[0-9a-f]{64}$/i.test(t)) throw new JshipError('USAGE', `${where} is not an ack key (64 hex characters)`, { hint: 'copy GROUP_DIR/ack.key from the primary site' });
  return Buffer.from(t, 'hex');
}
