import { JshipError } from '../core/errors.js';
import type { TapeLabel } from '../tape/label.js';
import { serialText, type TapeRow } from './catalog.js';

/**
 * What import decides about one tape, as pure functions of what the tape
 * says and what the replica holds (DESIGN invariant 6: importing a tape
 * twice changes nothing, another group's tape is refused, a damaged tape
 * keeps only its verified records). import.ts does the I/O around them:
 * reading and staging the tape, storing it, cataloguing it.
 */

/** The replica's copies a tape is judged against: its own catalogue key's, and its neighbours' in its chain. */
export interface HeldCopies {
  /** The copy of this very tape the replica holds. */
  same: TapeRow | undefined;
  /** The tape before it in its chain. */
  prev: TapeRow | undefined;
  /** The tape after it in its chain. */
  next: TapeRow | undefined;
  /** The nearest tape before it in its chain that the replica holds (an encrypted one bars a plaintext tape). */
  before: TapeRow | undefined;
}

/** What the replica is: the group, volumes and link secondary its tapes must match. */
export interface ReplicaIdentity {
  groupId: string;
  volumes: ReadonlyArray<{ name: string; size: number }>;
  /** The link secondary this replica is, if it is one. */
  linkName: string | undefined;
  /** The highest catalogue key held (a newer tape may grow the volumes, an older one may not shrink them). */
  newestKey: number;
  /** The first tape of this tape's chain that was encrypted (its catalogue key's magnitude), 0 when none was. */
  encryptedSince: number;
}

/**
 * Why a tape may not join the replica, from its label alone (before its
 * records are read), or null. `key` is its catalogue key; `offLineage` is
 * the epoch check's answer (lineageRefusal, over the catalogue);
 * `allowPlaintext` takes a plaintext tape into an encrypted chain.
 */
export function admitLabel(source: string, label: TapeLabel, key: number, me: ReplicaIdentity, held: HeldCopies, offLineage: JshipError | null, allowPlaintext: boolean): JshipError | null {
  if (label.groupId !== me.groupId) {
    return new JshipError('TAPE_FOREIGN', `${source} belongs to group ${label.groupId}; this replica holds group ${me.groupId}`, {
      hint: 'import it into a replica of its own group (a new directory)',
    });
  }
  const sameNames = label.volumes.length === me.volumes.length && label.volumes.every((v, i) => v.name === me.volumes[i]?.name);
  if (!sameNames || label.volumes.some((v, i) => v.size < (me.volumes[i]?.size ?? 0) && key > me.newestKey)) {
    return new JshipError('TAPE_FOREIGN', `${source}: its volumes (${label.volumes.map((v) => `${v.name} ${v.size}`).join(', ')}) differ from the replica's`, {
      hint: 'the group was re-created with other volumes: use a new replica',
    });
  }
  const linkName = label.link ? me.linkName ?? label.link.secondary : undefined;
  if (label.link && label.link.secondary !== linkName) {
    return new JshipError('TAPE_FOREIGN', `${source} is link tape ${label.serial} of secondary "${label.link.secondary}"; this replica is secondary "${linkName}"`, {
      hint: 'link tapes belong to the replica they were sent to: import the tape chain\'s tapes instead',
    });
  }
  if (offLineage) return offLineage;
  // The chain: the label must name the tape before it that the replica holds (a damaged copy's hash proves nothing).
  const prev = held.prev;
  if (prev && prev.status === 'complete' && label.prevTapeSha256 !== prev.sha256) {
    return new JshipError('TAPE_CHAIN_BROKEN', `${source}: its label names a previous tape with hash ${label.prevTapeSha256 ?? 'none'}, but the replica's ${label.link ? 'link tape' : 'tape'} ${label.serial - 1} (${prev.file}) has ${prev.sha256}`, {
      hint: `this tape is not of this chain (forged, or from a copied group directory), or the replica's tape ${label.serial - 1} is a copy that differs from the one exported: verify both against the primary's copies; a good copy of tape ${label.serial - 1} given together with this one replaces the held one. Nothing was changed`,
    });
  }
  const plain = allowPlaintext ? null : plaintextRefusal(label, key, me.encryptedSince, held.before);
  if (plain) {
    return new JshipError('TAPE_PLAINTEXT', `${source} is not encrypted, but ${plain}`, {
      hint: 'a plaintext tape in an encrypted chain is refused (it could carry any bytes); if the primary really stopped encrypting (export --allow-plaintext), import it with --allow-plaintext. Nothing was changed',
    });
  }
  return null;
}

/**
 * Why a plaintext tape may not join its chain, or null: the nearest tape
 * before it that the replica holds is encrypted (or, with none held, an
 * encrypted tape came before it once). A chain becomes plaintext again
 * only when told so.
 */
function plaintextRefusal(label: TapeLabel, key: number, encryptedSince: number, before: TapeRow | undefined): string | null {
  if (label.encryption) return null;
  if (before) return before.keyId ? `tape ${serialText(before.serial)} before it is encrypted (key id ${before.keyId})` : null;
  return encryptedSince > 0 && encryptedSince < Math.abs(key) ? `the chain's tapes are encrypted from tape ${serialText(encryptedSince)} on` : null;
}

/** What reading the tape found. */
export interface ReadFacts {
  /** Why reading stopped early (damaged, truncated, undecryptable), or undefined: verified to its trailer. */
  damage: JshipError | undefined;
  /** The hash (tape/tape-hash.ts) of the bytes read (the whole tape when undamaged). */
  sha256: string;
  /** The verified segments kept (of a damaged tape: those every hash it carries vouches for) and their records. */
  segments: number;
  records: number;
  /** The kept records conflict with the epochs the replica follows (divergedRecords), or null. */
  diverged: JshipError | null;
  /** Hashes that the labels of the tapes imported with this one name for it (as their previous tape). */
  namedBy: ReadonlySet<string>;
  /** The hash its sender computed (the direct link), when there is one. */
  expected: string | undefined;
}

export type ImportDecision =
  /** Stored as the tape's copy: the first one. */
  | { outcome: 'imported' }
  /** Stored in place of a damaged held copy, or of a complete one that the next tape's label does not name (`supersedes`). */
  | { outcome: 'replaced'; supersedes: boolean }
  /** Damaged: its verified records are stored. */
  | { outcome: 'partial' }
  /** Nothing changes: the same tape is held, or a damaged copy holds no more than the held one (`damaged`). */
  | { outcome: 'duplicate'; damaged: boolean }
  /** Not stored. */
  | { outcome: 'refused'; error: JshipError };

/** A damage that leaves nothing to keep or rebuild: no key, no label, or authentication failing from the start. */
export function unreadable(damage: JshipError, segments: number): boolean {
  return damage.code === 'TAPE_KEY_REQUIRED' || damage.code === 'TAPE_BAD_LABEL' || (damage.code === 'TAPE_AUTH_FAILED' && segments === 0);
}

/**
 * What happens to a tape once it was read (and, damaged, could not be
 * rebuilt from its parity): the outcome of invariant 6, in the order the
 * checks are made. `what` names it in messages ("tape 3", "link tape 2").
 */
export function decideImport(source: string, what: string, label: TapeLabel, read: ReadFacts, held: HeldCopies): ImportDecision {
  const { same, next } = held;
  const chain = label.link ? 'link tape' : 'tape';
  if (read.damage) {
    if (unreadable(read.damage, read.segments)) return { outcome: 'refused', error: read.damage };
    if (same && (same.status === 'complete' || same.records >= read.records)) return { outcome: 'duplicate', damaged: true };
    if (read.segments === 0) return { outcome: 'refused', error: read.damage };
    if (read.diverged) return { outcome: 'refused', error: read.diverged };
    return { outcome: 'partial' };
  }
  if (read.diverged) return { outcome: 'refused', error: read.diverged };
  // The chain, forward: the tape after this one that the replica holds must name this very copy.
  if (next && next.prevSha256 !== read.sha256) {
    return {
      outcome: 'refused',
      error: new JshipError('TAPE_CHAIN_BROKEN', `${source} has hash ${read.sha256}, but the replica's ${chain} ${label.serial + 1} (${next.file}) names a previous tape with ${next.prevSha256 ?? 'none'}`, {
        hint: `this copy is not the tape that came before ${label.serial + 1} (forged, from a copied group directory, or altered), or the held tape ${label.serial + 1} is not of this chain: verify both against the primary's copies. Nothing was changed`,
      }),
    };
  }
  let supersedes = false;
  if (same && same.status === 'complete') {
    if (same.sha256 === read.sha256) return { outcome: 'duplicate', damaged: false };
    // Two different complete copies: the chain decides (a tape after it, held or given now, names one of them).
    const named = (sha: string): boolean => read.namedBy.has(sha) || next?.prevSha256 === sha;
    if (!named(read.sha256) || named(same.sha256)) {
      return {
        outcome: 'refused',
        error: new JshipError('TAPE_CONFLICT', `${source} is ${what}, but the replica holds a different ${what} (${same.file})`, {
          hint: 'two different exports used the same serial, or one copy was altered: find out which is right (jship verify, against the primary\'s copies); a copy that the next tape\'s label names replaces the held one when both are imported together. Nothing was changed',
        }),
      };
    }
    supersedes = true;
  }
  if (read.expected !== undefined && read.expected !== read.sha256) {
    return {
      outcome: 'refused',
      error: new JshipError('TAPE_DAMAGED', `${source} arrived with hash ${read.sha256.slice(0, 12)}…, its sender computed ${read.expected.slice(0, 12)}…`, { hint: 'it was damaged on its way and not stored; it is sent again' }),
    };
  }
  return same ? { outcome: 'replaced', supersedes } : { outcome: 'imported' };
}
