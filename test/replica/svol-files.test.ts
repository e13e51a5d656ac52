import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readReplicaState, writeReplicaState } from '../../src/replica/replica-state.js';
import { svolChange, type SvolFile } from '../../src/replica/svol-files.js';
import { tempDir } from '../helpers.js';

const left: SvolFile = { dev: '2049', ino: '131', size: '1048576', mtimeNs: '1796668674170216852' };

describe('whether an SVOL still holds the point its restore left it at', () => {
  it('is the same file, the same size, unwritten since; a state from before the record knows only a missing file', () => {
    expect(svolChange('s/a.img', left, { ...left }, false)).toBeNull();
    expect(svolChange('s/a.img', left, undefined, false)).toBe('s/a.img is missing');
    expect(svolChange('s/a.img', left, { ...left, ino: '132' }, false)).toMatch(/another file than the one restored/);
    expect(svolChange('s/a.img', left, { ...left, dev: '2050' }, false)).toMatch(/another file than the one restored/);
    expect(svolChange('s/a.img', left, { ...left, size: '4096' }, false)).toBe('s/a.img changed size (1048576 bytes when restored, 4096 now)');
    expect(svolChange('s/a.img', left, { ...left, mtimeNs: '1796668674170216853' }, false)).toMatch(/written after its restore, by something other than jship/);
    // A restore into it was interrupted: its own writes moved the last write; another file is still seen.
    expect(svolChange('s/a.img', left, { ...left, mtimeNs: '1796668674170216853' }, true)).toBeNull();
    expect(svolChange('s/a.img', left, { ...left, ino: '9' }, true)).toMatch(/another file/);
    expect(svolChange('s/a.img', undefined, { ...left }, false)).toBeNull();
    expect(svolChange('s/a.img', undefined, undefined, false)).toBe('s/a.img is missing');
  });
});

describe('state.json\'s record of the SVOL files', () => {
  const dir = tempDir();

  it('is read back as written; a damaged one is refused, naming it', async () => {
    const state = { format: 1 as const, svol: { restoredSeq: '7', restoredTs: '1', inProgress: null, files: { a: left } }, devices: {} };
    await writeReplicaState(dir, state);
    expect(await readReplicaState(dir)).toEqual(state);
    for (const files of [null, { a: { ...left, ino: -1 } }, { a: { ...left, size: undefined } }, { a: 'x' }]) {
      writeFileSync(join(dir, 'state.json'), JSON.stringify({ ...state, svol: { ...state.svol, files } }));
      await expect(readReplicaState(dir)).rejects.toMatchObject({ code: 'REPLICA_BAD', message: expect.stringContaining('"svol.files" is not a list of files') });
    }
  });
});
