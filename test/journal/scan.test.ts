import { openSync, writeSync, closeSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openSiteGroup } from '../../src/owner/consumers.js';
import { scanGroup } from '../../src/journal/scan.js';
import { RecordType } from '../../src/core/record.js';
import { decodeMarker } from '../../src/core/marker.js';
import { importTapes } from '../../src/replica/import.js';
import { restoreReplica } from '../../src/replica/restore.js';
import { tempDir, makeGroup, MiB, KiB } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';

const bin = new URL('../../bin/jship', import.meta.url).pathname;

function scribble(path: string, offsets: number[], len: number): void {
  const fd = openSync(path, 'r+');
  for (const o of offsets) writeSync(fd, randomBytes(len), 0, len, o);
  closeSync(fd);
}

describe('changed-block scan', () => {
  const dir = tempDir();

  it('journals exactly the changed blocks, grows with the volume, refuses a shrink, and restores to the scanned image', async () => {
    const g = await makeGroup(dir, { vm: 4 * MiB }, { journalSize: 16 * MiB });
    const img = join(dir, 'vm.img');
    writeFileSync(img, randomBytes(4 * MiB));
    const first = await scanGroup(g);
    expect(first.volumes[0]).toMatchObject({ first: true, changedBlocks: 0, records: 0 });
    // A base of the image as it is (taken by export --base), then changes outside jship.
    let group = await openSiteGroup(g);
    await exportTo(group, join(dir, 't'), { base: true });
    await group.close();
    const offsets = [0, 5 * 64 * KiB + 100, 17 * 64 * KiB, 18 * 64 * KiB + 65_000, 63 * 64 * KiB + 10];
    scribble(img, offsets, 700);
    const expectBlocks = new Set(offsets.flatMap((o) => [Math.floor(o / (64 * KiB)), Math.floor((o + 699) / (64 * KiB))]));
    const second = await scanGroup(g);
    expect(second.volumes[0]?.changedBlocks).toBe(expectBlocks.size);
    group = await openSiteGroup(g);
    const recs = [];
    for await (const r of group.records()) recs.push(r);
    const updates = recs.filter((r) => r.header.type === RecordType.Update);
    const blocks = new Set(updates.flatMap((r) => Array.from({ length: r.header.length / (64 * KiB) }, (_v, i) => r.header.offset / (64 * KiB) + i)));
    expect(blocks).toEqual(expectBlocks);
    const scanMarker = recs.filter((r) => r.header.type === RecordType.Marker).map((r) => decodeMarker(r.data)).find((m) => m.kind === 'scan');
    expect(scanMarker).toBeDefined();
    await group.close();
    // Nothing changed: nothing journaled.
    expect((await scanGroup(g)).volumes[0]?.changedBlocks).toBe(0);
    // Growth: the new blocks are changes.
    const fd = openSync(img, 'a');
    writeSync(fd, randomBytes(256 * KiB));
    closeSync(fd);
    const grown = await scanGroup(g);
    expect(grown.volumes[0]).toMatchObject({ changedBlocks: 4, grownFrom: 4 * MiB });
    group = await openSiteGroup(g);
    expect(group.volumes[0]?.size).toBe(4 * MiB + 256 * KiB);
    await exportTo(group, join(dir, 't'));
    await group.close();
    await importTapes(join(dir, 'rep'), [join(dir, 't')]);
    await restoreReplica(join(dir, 'rep'), { point: { kind: 'latest' }, targets: [{ path: join(dir, 'restored.img') }] });
    expect(readFileSync(join(dir, 'restored.img')).equals(readFileSync(img))).toBe(true);
    // A shrink is refused, clearly, and changes nothing.
    truncateSync(img, 3 * MiB);
    const r = spawnSync(process.execPath, [bin, 'scan', g, '--json'], { encoding: 'utf8' });
    expect(r).toExit(1);
    expect(JSON.parse(r.stdout).error.message).toMatch(/shrank/);
    expect(spawnSync(process.execPath, [bin, 'scan', g, '--block-size', '1000'], { encoding: 'utf8' })).toExit(2);
  });
});
