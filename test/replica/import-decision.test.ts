import { describe, expect, it } from 'vitest';
import { JshipError } from '../../src/core/errors.js';
import type { TapeLabel } from '../../src/tape/label.js';
import type { TapeRow } from '../../src/replica/catalog.js';
import { admitLabel, decideImport, type HeldCopies, type ReadFacts, type ReplicaIdentity } from '../../src/replica/import-decision.js';

// DESIGN invariant 6 as a table: importing a tape twice changes nothing; another group's tape is
// refused; a damaged tape keeps only its verified records; a copy replaces another only when it is
// complete and the chain names it; a gap is not a refusal (the import report names it: coverage.ts).

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);

const label = (o: Partial<TapeLabel> = {}): TapeLabel => ({
  format: 'jship-tape', version: 2, groupId: 'g1', volumes: [{ name: 'vol0', size: 1 << 20 }], serial: 2,
  mediaSet: { id: 'm2', index: 0 }, prevTapeSha256: A, createdAt: '2026-12-04T00:00:00.000Z', host: 'h', encryption: null, ...o,
});

const row = (serial: number, o: Partial<TapeRow> = {}): TapeRow => ({
  serial, file: `jship-${serial}.tar.zst`, sha256: A, bytes: 100, mediaSet: `m${serial}`, mediaIndex: 0, mediaLast: true, prevSha256: null,
  keyId: null, status: 'complete', problem: null, records: 10, firstSeq: 1n, lastSeq: 10n, firstTs: 1n, lastTs: 2n, baseId: null,
  createdAt: '2026-12-04T00:00:00.000Z', importedAt: '2026-12-04T00:00:00.000Z', ...o,
});

const none: HeldCopies = { same: undefined, prev: undefined, next: undefined, before: undefined };
const me: ReplicaIdentity = { groupId: 'g1', volumes: [{ name: 'vol0', size: 1 << 20 }], linkName: undefined, newestKey: 1, encryptedSince: 0 };
const damaged = new JshipError('TAPE_TRUNCATED', 'tape ends in segment 3');
const read = (o: Partial<ReadFacts> = {}): ReadFacts => ({ damage: undefined, sha256: B, segments: 3, records: 30, diverged: null, namedBy: new Set(), expected: undefined, ...o });

describe('admitLabel: what the label alone refuses', () => {
  const diverged = new JshipError('TAPE_DIVERGED', 'of another promotion');
  it.each<[string, TapeLabel, Partial<ReplicaIdentity>, Partial<HeldCopies>, JshipError | null, string | null]>([
    ['a tape of this group after the held one', label(), {}, { prev: row(1) }, null, null],
    ['another group\'s tape', label({ groupId: 'g2' }), {}, {}, null, 'TAPE_FOREIGN'],
    ['other volumes', label({ volumes: [{ name: 'other', size: 1 << 20 }] }), {}, {}, null, 'TAPE_FOREIGN'],
    ['a newer tape with smaller volumes', label({ volumes: [{ name: 'vol0', size: 1 << 19 }] }), {}, {}, null, 'TAPE_FOREIGN'],
    ['an older tape with smaller volumes (the volume grew since)', label({ volumes: [{ name: 'vol0', size: 1 << 19 }] }), { newestKey: 5 }, {}, null, null],
    ['another secondary\'s link tape', label({ link: { secondary: 'east' } }), { linkName: 'west' }, {}, null, 'TAPE_FOREIGN'],
    ['a tape off the replica\'s lineage', label(), {}, {}, diverged, 'TAPE_DIVERGED'],
    ['a label naming another previous tape', label({ prevTapeSha256: C }), {}, { prev: row(1) }, null, 'TAPE_CHAIN_BROKEN'],
    ['a label after a damaged previous copy (its hash proves nothing)', label({ prevTapeSha256: C }), {}, { prev: row(1, { status: 'partial' }) }, null, null],
    ['a plaintext tape after an encrypted one', label(), {}, { before: row(1, { keyId: 'k1' }) }, null, 'TAPE_PLAINTEXT'],
    ['a plaintext tape once the chain was encrypted', label({ serial: 5 }), { encryptedSince: 3 }, {}, null, 'TAPE_PLAINTEXT'],
    ['a plaintext tape after a plaintext one held', label({ serial: 5 }), { encryptedSince: 3 }, { before: row(4) }, null, null],
  ])('%s', (_what, l, id, held, offLineage, code) => {
    const e = admitLabel('t.tar.zst', l, l.serial, { ...me, ...id }, { ...none, ...held }, offLineage, false);
    expect(e?.code ?? null).toBe(code);
  });

  it('--allow-plaintext takes a plaintext tape into an encrypted chain', () => {
    expect(admitLabel('t', label(), 2, me, { ...none, before: row(1, { keyId: 'k1' }) }, null, true)).toBeNull();
  });
});

describe('decideImport: the outcome once the tape was read', () => {
  it.each<[string, Partial<ReadFacts>, Partial<HeldCopies>, string, string | null]>([
    ['a whole tape, nothing held', {}, {}, 'imported', null],
    ['a whole tape after a gap (tape 1 of 3 missing): imported, the report names the gap', {}, { prev: undefined }, 'imported', null],
    ['the same tape again', {}, { same: row(2, { sha256: B }) }, 'duplicate', null],
    ['a whole tape over a damaged copy', {}, { same: row(2, { status: 'partial', sha256: C, records: 5 }) }, 'replaced', null],
    ['another whole copy that the next tape names', {}, { same: row(2, { sha256: C }), next: row(3, { prevSha256: B }) }, 'replaced', null],
    ['another whole copy that a tape given with it names', { namedBy: new Set([B]) }, { same: row(2, { sha256: C }) }, 'replaced', null],
    ['another whole copy nobody names', {}, { same: row(2, { sha256: C }) }, 'refused', 'TAPE_CONFLICT'],
    ['another whole copy when the held one is named too', { namedBy: new Set([B, C]) }, { same: row(2, { sha256: C }) }, 'refused', 'TAPE_CONFLICT'],
    ['a copy the held next tape does not name', {}, { next: row(3, { prevSha256: C }) }, 'refused', 'TAPE_CHAIN_BROKEN'],
    ['records written after a takeover', { diverged: new JshipError('TAPE_DIVERGED', 'x') }, {}, 'refused', 'TAPE_DIVERGED'],
    ['bytes that differ from what the sender hashed', { expected: C }, {}, 'refused', 'TAPE_DAMAGED'],
    ['a damaged tape, nothing held: its verified records', { damage: damaged }, {}, 'partial', null],
    ['a damaged tape holding more than the held damaged copy', { damage: damaged }, { same: row(2, { status: 'partial', records: 5 }) }, 'partial', null],
    ['a damaged tape when a complete copy is held', { damage: damaged }, { same: row(2) }, 'duplicate', null],
    ['a damaged tape holding no more than the held damaged copy', { damage: damaged, records: 30 }, { same: row(2, { status: 'partial', records: 30 }) }, 'duplicate', null],
    ['a damaged tape with no verified segment', { damage: damaged, segments: 0, records: 0 }, {}, 'refused', 'TAPE_TRUNCATED'],
    ['a damaged tape whose records diverge', { damage: damaged, diverged: new JshipError('TAPE_DIVERGED', 'x') }, {}, 'refused', 'TAPE_DIVERGED'],
    ['an encrypted tape without its key', { damage: new JshipError('TAPE_KEY_REQUIRED', 'no key'), segments: 0, records: 0 }, { same: row(2, { status: 'partial', records: 0 }) }, 'refused', 'TAPE_KEY_REQUIRED'],
    ['a tape failing authentication from its start', { damage: new JshipError('TAPE_AUTH_FAILED', 'bad key'), segments: 0, records: 0 }, {}, 'refused', 'TAPE_AUTH_FAILED'],
    ['a tape failing authentication later: what was verified', { damage: new JshipError('TAPE_AUTH_FAILED', 'bad frame') }, {}, 'partial', null],
  ])('%s', (_what, r, held, outcome, code) => {
    const d = decideImport('t.tar.zst', 'tape 2', label(), read(r), { ...none, ...held });
    expect(d.outcome).toBe(outcome);
    expect(d.outcome === 'refused' ? d.error.code : null).toBe(code);
  });

  it('a copy that replaces a complete one says so (supersedes), one that replaces a damaged one does not', () => {
    expect(decideImport('t', 'tape 2', label(), read(), { ...none, same: row(2, { sha256: C }), next: row(3, { prevSha256: B }) })).toEqual({ outcome: 'replaced', supersedes: true });
    expect(decideImport('t', 'tape 2', label(), read(), { ...none, same: row(2, { status: 'partial', sha256: C }) })).toEqual({ outcome: 'replaced', supersedes: false });
  });
});
