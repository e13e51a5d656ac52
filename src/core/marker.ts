import { JshipError } from './errors.js';

/**
 * The payload of a Marker record: UTF-8 JSON with a `kind`. Markers take
 * sequence numbers like every journal record, so every consumer sees them
 * in order (patent §0159-0160).
 */
export type MarkerPayload =
  /** A named restore point (`jship mark`). */
  | { kind: 'restore-point'; name: string }
  /** A base copy began; its base records carry `baseId` (= this marker's sequence number). */
  /** `for`: a resync base written for one demoted old primary's request (its id; `jship export --resync-for`). */
  | { kind: 'base-started'; scope: 'full' | 'resync'; volumes: string[]; for?: string }
  | { kind: 'base-complete'; baseId: string; records: number; bytes: number }
  | { kind: 'base-interrupted'; baseId: string; reason: string }
  /** The journal filled up under the `suspend` policy: writes are tracked in a dirty bitmap from here on. */
  | { kind: 'suspended'; reason: string }
  /** Journaling resumed after a suspension; a resync base is needed before a restore point exists again. */
  | { kind: 'resumed'; dirtyBytes: number }
  /** The wall clock stepped (back, or forward by more than a minute). */
  | { kind: 'clock-step'; from: string; to: string; stepNs: string }
  /** A changed-block scan (`jship scan`): the volumes' images as of this point, consistent only if they were quiet. */
  | { kind: 'scan'; volumes: Array<{ name: string; changedBlocks: number; bytes: number; grownFrom?: number; first?: boolean }> }
  /**
   * The first record of a new epoch (`jship promote`, §0161-0166): the
   * secondary promoted at `fromSeq` (its volumes as of that record) became
   * the primary of `generation`; `forced` when its old primary had been
   * heard from recently.
   */
  | { kind: 'promoted'; generation: number; fromSeq: string; forced: boolean; host: string; point: string };

export type MarkerKind = MarkerPayload['kind'];

const KINDS: ReadonlySet<string> = new Set<MarkerKind>([
  'restore-point', 'base-started', 'base-complete', 'base-interrupted', 'suspended', 'resumed', 'clock-step', 'scan', 'promoted',
]);

export function encodeMarker(p: MarkerPayload): Buffer {
  return Buffer.from(JSON.stringify(p), 'utf8');
}

export function decodeMarker(data: Uint8Array, where = 'marker'): MarkerPayload {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch (e) {
    throw new JshipError('RECORD_BAD_FIELD', `${where}: marker payload is not JSON`, { cause: e });
  }
  if (typeof v !== 'object' || v === null || typeof (v as { kind?: unknown }).kind !== 'string') {
    throw new JshipError('RECORD_BAD_FIELD', `${where}: marker payload has no kind`);
  }
  const kind = (v as { kind: string }).kind;
  if (!KINDS.has(kind)) {
    // A newer jship may add kinds: keep the payload, readers ignore what they do not know.
    return v as MarkerPayload;
  }
  if (kind === 'restore-point' && typeof (v as { name?: unknown }).name !== 'string') {
    throw new JshipError('RECORD_BAD_FIELD', `${where}: restore-point marker has no name`);
  }
  return v as MarkerPayload;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/;

/** Checks a restore-point name: 1-128 characters of letters, digits and . _ : @ + -, starting with a letter or digit. */
export function checkMarkerName(name: string): void {
  if (!NAME.test(name)) {
    throw new JshipError('MARKER_BAD_NAME', `marker name "${name}" is not allowed`, {
      hint: 'use 1-128 letters, digits and . _ : @ + -, starting with a letter or digit (e.g. before-upgrade-2026-11-24)',
    });
  }
}
