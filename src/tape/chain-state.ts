import { join } from 'node:path';
import { JshipError } from '../core/errors.js';
import { readJsonFile, writeFileAtomic } from '../io/files.js';

/**
 * The primary's side of the tape chain (GROUP_DIR/chain.json): where the next
 * export continues, and which tapes still wait for an acknowledgement.
 */
export interface ChainState {
  format: 1;
  /** Serial of the next tape. */
  nextSerial: number;
  /** The hash of the last tape of the chain (tape-hash.ts). */
  lastTapeSha256: string | null;
  /** Highest sequence number written to a committed tape (the chain's position; export continues after it). */
  exportedSeq: string;
  /** Timestamp (ns) of the record at exportedSeq, when known (chains written before it was kept lack it). */
  exportedTs?: string;
  /** Tapes written with --keep-until-ack (or to a stream) that no acknowledgement has covered yet. */
  pendingAcks: Array<{ serial: number; firstSeq: string; lastSeq: string }>;
  /** Highest sequence number an acknowledgement covered. */
  ackedSeq: string;
  /**
   * A suspension went onto the chain and no base after it yet: if the
   * group's resync base goes to another consumer (a link secondary), the
   * next export carries a full base instead.
   */
  sawSuspension?: boolean;
  /** Key id of the chain's last tape (null: plaintext; absent: no tape yet). A plaintext export after an encrypted one needs allowPlaintext. */
  lastKeyId?: string | null;
  /** Set just before a tape is renamed into place; cleared once the state has caught up. */
  committing: { serial: number; path: string; sha256: string; lastSeq: string | null; keepUntilAck: boolean; firstSeq: string | null; lastTs?: string } | null;
}

export const EMPTY_CHAIN: ChainState = { format: 1, nextSerial: 1, lastTapeSha256: null, exportedSeq: '0', pendingAcks: [], ackedSeq: '0', committing: null };

export function chainPath(groupDir: string): string {
  return join(groupDir, 'chain.json');
}

export async function readChainState(groupDir: string): Promise<ChainState> {
  return readJsonFile(chainPath(groupDir), () => ({ ...EMPTY_CHAIN }), (x) => {
    const v = x as ChainState;
    if (v.format !== 1 || !Number.isSafeInteger(v.nextSerial) || !/^\d+$/.test(v.exportedSeq) || !Array.isArray(v.pendingAcks) || (v.exportedTs !== undefined && !/^\d{1,20}$/.test(v.exportedTs))) throw new Error('malformed');
    return v;
  }, (why) => new JshipError('CHAIN_STATE_DAMAGED', `${chainPath(groupDir)} is damaged (${why})`, {
    hint: 'it records where the tape chain stands; restore it from a backup, or look up the last tape exported and rebuild it by hand',
  }));
}

export async function writeChainState(groupDir: string, s: ChainState): Promise<void> {
  await writeFileAtomic(chainPath(groupDir), `${JSON.stringify(s, null, 2)}\n`);
}

/**
 * The position the tape chain has secured: every record up to it is on a
 * durable tape that needs no acknowledgement, or was acknowledged.
 */
export function securedSeq(s: ChainState): bigint {
  const exported = BigInt(s.exportedSeq);
  const first = s.pendingAcks[0];
  if (!first) return exported;
  const before = BigInt(first.firstSeq) - 1n;
  const acked = BigInt(s.ackedSeq);
  if (acked <= before) return before;
  return acked < exported ? acked : exported;
}

/** Applies an acknowledgement of everything up to `seq`. */
export function applyAck(s: ChainState, seq: bigint): ChainState {
  const acked = seq > BigInt(s.ackedSeq) ? seq : BigInt(s.ackedSeq);
  return { ...s, ackedSeq: acked.toString(), pendingAcks: s.pendingAcks.filter((p) => BigInt(p.lastSeq) > acked) };
}
