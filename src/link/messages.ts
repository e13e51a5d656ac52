import { JshipError } from '../core/errors.js';
import { MessageType, encodeFrame, type Frame } from './frame.js';
import { checkLineage, type Lineage } from '../core/epoch.js';
import { checkResyncRequest, type ResyncRequest } from '../core/resync-request.js';

/**
 * The JSON messages of the direct link (every type but TAPE_DATA, whose
 * payload is raw tape bytes). Sequence numbers and nanosecond timestamps
 * travel as decimal strings: they pass 2^53. Every field is checked on
 * arrival; a message that does not fit is a protocol error.
 */

/** The primary's journal, as a secondary sees it (§0051: journal status over the control path). */
export interface LinkStatus {
  /** Last record written (null: none yet). */
  lastSeq: string | null;
  lastTs: string | null;
  /** journal-out and journal-in (§0074-0075). */
  outSeq: string;
  inSeq: string;
  usagePercent: { metadata: number; data: number };
  /** What this secondary has confirmed. */
  confirmedSeq: string;
}

export interface PrimaryHello {
  role: 'primary';
  groupId: string;
  volumes: Array<{ name: string; size: number }>;
  host: string;
  status: LinkStatus;
  /** The group's epoch lineage (core/epoch.ts); absent from a jship before epochs: epoch 1. */
  epochs: Lineage;
  /** Link tapes it sends before the oldest is confirmed: the smaller of the secondary's and its own (absent from an older jship: 1). */
  window: number;
}

export interface SecondaryHello {
  role: 'secondary';
  /** null: a new replica, created from the primary's hello. */
  groupId: string | null;
  /** The secondary's name at the primary (its registration). */
  name: string;
  /**
   * The last link tape the replica holds: the resume position, checked
   * against the primary's own record. `epoch`: the epoch whose chain it is
   * (1 when absent); a tape of an earlier epoch than the primary's is in no
   * record of that primary, which resumes from `lastSeq` instead.
   */
  held: { serial: number; sha256: string; epoch?: number } | null;
  /** The epoch lineage the replica follows (absent from a jship before epochs: epoch 1). */
  epochs: Lineage;
  /** The newest record the replica holds, of any chain (null: none). */
  lastSeq: string | null;
  /** pull: the secondary asks for each tape (READ); push: the primary sends when it has records. */
  mode: 'pull' | 'push';
  /**
   * An old primary being demoted (`jship demote`): its volumes are the
   * group as of `fromSeq` (the takeover point) except in these chunks
   * (its own writes after that point). It asks for a resync base of them
   * and of the chunks written in the primary's epoch, not for a full base.
   */
  resync?: ResyncRequest;
  /** Link tapes it takes before it confirms the oldest (absent from an older jship: 1, stop and wait). */
  window: number;
}

/** The most link tapes in flight to one secondary: one being stored while the next is sent. */
export const MAX_WINDOW = 2;

export interface ErrorMessage { code: string; message: string; hint: string | null }
export interface ReadMessage { waitMs: number }
export interface IdleMessage { status: LinkStatus }
export interface TapeBegin { serial: number; firstSeq: string }
export interface TapeEnd { serial: number; bytes: number; sha256: string }
export interface ConfirmMessage { serial: number; sha256: string }

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const DEC = /^\d{1,20}$/;
/** Secondary names: what a host name or a site label looks like. */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
/** No JSON message is anywhere near this. */
const MAX_JSON = 64 * 1024;

type Obj = Record<string, unknown>;

function bad(type: MessageType, why: string): never {
  throw new JshipError('LINK_PROTOCOL', `malformed ${MessageType[type]} message: ${why}`, { hint: 'the peer does not speak this jship link protocol; the connection was closed' });
}

function object(f: Frame): Obj {
  if (f.payload.length > MAX_JSON) bad(f.type, `${f.payload.length} bytes of JSON`);
  let v: unknown;
  try {
    v = JSON.parse(f.payload.toString('utf8'));
  } catch {
    bad(f.type, 'not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(f.type, 'not a JSON object');
  return v as Obj;
}

const str = (t: MessageType, o: Obj, k: string, re?: RegExp): string => {
  const v = o[k];
  if (typeof v !== 'string' || (re && !re.test(v))) bad(t, `field "${k}" is missing or malformed`);
  return v;
};
const int = (t: MessageType, o: Obj, k: string, min = 0): number => {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) bad(t, `field "${k}" is not an integer >= ${min}`);
  return v;
};
const dec = (t: MessageType, o: Obj, k: string): string => str(t, o, k, DEC);
const decOrNull = (t: MessageType, o: Obj, k: string): string | null => (o[k] === null ? null : dec(t, o, k));

function status(t: MessageType, v: unknown): LinkStatus {
  if (typeof v !== 'object' || v === null) bad(t, 'field "status" is missing');
  const o = v as Obj;
  const u = o.usagePercent as Obj | undefined;
  if (typeof u?.metadata !== 'number' || typeof u.data !== 'number') bad(t, 'field "status.usagePercent" is malformed');
  return {
    lastSeq: decOrNull(t, o, 'lastSeq'), lastTs: decOrNull(t, o, 'lastTs'),
    outSeq: dec(t, o, 'outSeq'), inSeq: dec(t, o, 'inSeq'),
    usagePercent: { metadata: u.metadata, data: u.data },
    confirmedSeq: dec(t, o, 'confirmedSeq'),
  };
}

function lineage(t: MessageType, o: Obj): Lineage {
  return o.epochs === undefined ? [] : checkLineage(o.epochs, (why) => bad(t, `field "epochs" ${why}`));
}

export function expect(f: Frame, type: MessageType): void {
  if (f.type === MessageType.Error) {
    const e = decodeError(f);
    throw new JshipError('LINK_REFUSED', `the peer refused: ${e.message}`, { hint: e.hint ?? 'see the log of the other site', details: { peerCode: e.code } });
  }
  if (f.type !== type) bad(type, `expected ${MessageType[type]}, got ${MessageType[f.type]}`);
}

export function decodePrimaryHello(f: Frame): PrimaryHello {
  const t = MessageType.Hello;
  const o = object(f);
  if (o.role !== 'primary') bad(t, 'the peer is not a primary');
  if (!Array.isArray(o.volumes) || o.volumes.length === 0) bad(t, 'field "volumes" is empty');
  const volumes = (o.volumes as unknown[]).map((v) => {
    const x = v as Obj;
    return { name: str(t, x, 'name'), size: int(t, x, 'size') };
  });
  return { role: 'primary', groupId: str(t, o, 'groupId', UUID), volumes, host: str(t, o, 'host'), status: status(t, o.status), epochs: lineage(t, o), window: window(t, o) };
}

export function decodeSecondaryHello(f: Frame): SecondaryHello {
  const t = MessageType.Hello;
  const o = object(f);
  if (o.role !== 'secondary') bad(t, 'the peer is not a secondary');
  if (o.mode !== 'pull' && o.mode !== 'push') bad(t, 'field "mode" is neither pull nor push');
  let held: SecondaryHello['held'] = null;
  if (o.held !== null) {
    const h = o.held as Obj;
    if (typeof h !== 'object') bad(t, 'field "held" is malformed');
    held = { serial: int(t, h, 'serial', 1), sha256: str(t, h, 'sha256', HEX64), ...(h.epoch !== undefined ? { epoch: int(t, h, 'epoch', 1) } : {}) };
  }
  const lastSeq = o.lastSeq === undefined ? null : decOrNull(t, o, 'lastSeq');
  const resync = o.resync === undefined ? undefined : resyncRequest(t, o.resync);
  return { role: 'secondary', groupId: o.groupId === null ? null : str(t, o, 'groupId', UUID), name: str(t, o, 'name', NAME), held, mode: o.mode, epochs: lineage(t, o), lastSeq, window: window(t, o), ...(resync ? { resync } : {}) };
}

/** A HELLO's window: absent (an older jship) is 1; more than this side takes is taken as its most. */
function window(t: MessageType, o: Obj): number {
  return o.window === undefined ? 1 : Math.min(int(t, o, 'window', 1), MAX_WINDOW);
}

function resyncRequest(t: MessageType, v: unknown): ResyncRequest {
  return checkResyncRequest(v, (why) => bad(t, `field "resync" ${why}`));
}

export function decodeError(f: Frame): ErrorMessage {
  const o = object(f);
  const t = MessageType.Error;
  return { code: str(t, o, 'code'), message: str(t, o, 'message'), hint: typeof o.hint === 'string' ? o.hint : null };
}

export function decodeRead(f: Frame): ReadMessage {
  return { waitMs: int(MessageType.Read, object(f), 'waitMs') };
}

export function decodeIdle(f: Frame): IdleMessage {
  return { status: status(MessageType.Idle, object(f).status) };
}

export function decodeStatus(f: Frame): LinkStatus {
  return status(MessageType.Status, object(f).status);
}

export function decodeTapeBegin(f: Frame): TapeBegin {
  const o = object(f);
  return { serial: int(MessageType.TapeBegin, o, 'serial', 1), firstSeq: dec(MessageType.TapeBegin, o, 'firstSeq') };
}

export function decodeTapeEnd(f: Frame): TapeEnd {
  const o = object(f);
  const t = MessageType.TapeEnd;
  return { serial: int(t, o, 'serial', 1), bytes: int(t, o, 'bytes', 1), sha256: str(t, o, 'sha256', HEX64) };
}

export function decodeConfirm(f: Frame): ConfirmMessage {
  const o = object(f);
  const t = MessageType.Confirm;
  return { serial: int(t, o, 'serial', 1), sha256: str(t, o, 'sha256', HEX64) };
}

/** One JSON message as a frame. */
export function message(type: MessageType, body: object = {}): Buffer {
  return encodeFrame(type, Buffer.from(JSON.stringify(body), 'utf8'));
}
