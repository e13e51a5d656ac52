import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeAck, parseAckKey } from '../../src/core/ack.js';
import { groupPaths } from '../../src/journal/group-files.js';
import { acknowledge } from '../../src/tape/acknowledge.js';
import { readChainState } from '../../src/tape/chain-state.js';
import { exportGroup } from '../../src/tape/export.js';
import { tempDir } from '../helpers.js';
import { GatedDir, exportTo, groupWithData, writeMixed } from './helpers.js';

describe('an acknowledgement while an export runs', () => {
  const dir = tempDir();

  it('takes its turn after the export, so the export\'s copy of the chain state does not undo it', async () => {
    const { g, group } = await groupWithData(dir, 50);
    try {
      const first = await exportTo(group, join(dir, 't'), { keepUntilAck: true });
      const acked = first.updates!.lastSeq;
      await writeMixed(group, 20, 2);
      let open = (): void => undefined;
      const gate = new Promise<void>((r) => { open = r; });
      const exporting = exportGroup(group, { destination: new GatedDir(join(dir, 't'), gate), keepUntilAck: true });
      const key = parseAckKey(readFileSync(groupPaths(g).ackKey, 'utf8'), 'ack.key');
      const acking = acknowledge(group, JSON.stringify(makeAck(key, group.config.groupId, acked)), 'ack.json');
      open();
      const [e, a] = await Promise.all([exporting, acking]);
      expect(e.tapes.map((t) => t.serial)).toEqual([2]);
      expect(a.acknowledged).toBe(acked);
      expect((await readChainState(g)).pendingAcks.map((p) => p.serial)).toEqual([2]);
    } finally {
      await group.close();
    }
  });
});
