import { describe, expect, it } from 'vitest';
import { deferred } from '../../src/core/deferred.js';
import { GroupCommit } from '../../src/journal/group-commit.js';
import { stateEvent, type GroupState } from '../../src/journal/group-status.js';
import type { EncodedRecord, JournalVolume } from '../../src/journal/journal-volume.js';
import { SpaceWaiters, type SpaceHooks } from '../../src/journal/space-waiters.js';

// The parts journal-group.ts was split into, each on its own (the group's own tests cover them together).

const rec = (seq: number, bytes = 0): EncodedRecord => ({ seq: BigInt(seq), dataPos: 0n, header: Buffer.alloc(64), data: bytes ? Buffer.alloc(bytes) : undefined });

describe('GroupCommit', () => {
  function journal(): { j: JournalVolume; batches: bigint[][]; gates: Array<ReturnType<typeof deferred<void>>>; fail: Set<number> } {
    const batches: bigint[][] = [];
    const gates: Array<ReturnType<typeof deferred<void>>> = [];
    const fail = new Set<number>();
    const j = {
      writeBatch: async (b: EncodedRecord[]): Promise<void> => {
        const n = batches.push(b.map((r) => r.seq)) - 1;
        const g = deferred<void>();
        gates.push(g);
        await g.promise;
        if (fail.has(n)) throw new Error(`batch ${n} failed`);
      },
    } as unknown as JournalVolume;
    return { j, batches, gates, fail };
  }
  const until = async (f: () => boolean): Promise<void> => {
    while (!f()) await new Promise((r) => setImmediate(r));
  };

  it('records given out while a batch is written go together in the next one, in order', async () => {
    const { j, batches, gates } = journal();
    let failed: Error | undefined;
    const c = new GroupCommit(j, { failed: () => failed, fail: (e) => { failed = e as Error; } });
    const first = [c.enqueue(rec(1)), c.enqueue(rec(2))];
    await until(() => batches.length === 1);
    const second = [c.enqueue(rec(3)), c.enqueue(rec(4)), c.enqueue(rec(5))];
    expect(batches).toEqual([[1n, 2n]]);
    gates[0]?.resolve();
    await Promise.all(first);
    await until(() => batches.length === 2);
    gates[1]?.resolve();
    await Promise.all(second);
    expect(batches).toEqual([[1n, 2n], [3n, 4n, 5n]]);
    expect(failed).toBeUndefined();
  });

  it('a failed write fails its batch and every batch after it, and the group is told', async () => {
    const { j, batches, gates, fail } = journal();
    let failed: Error | undefined;
    const c = new GroupCommit(j, { failed: () => failed, fail: (e) => { failed ??= e as Error; } });
    fail.add(0);
    const a = c.enqueue(rec(1, 10));
    await until(() => batches.length === 1);
    const b = c.enqueue(rec(2, 10));
    gates[0]?.resolve();
    await expect(a).rejects.toThrow('batch 0 failed');
    await expect(b).rejects.toThrow('batch 0 failed');
    expect(batches).toHaveLength(1);
    expect(failed?.message).toBe('batch 0 failed');
  });
});

describe('SpaceWaiters', () => {
  function waiters(room: { count: number }, timeoutMs = 60_000): { w: SpaceWaiters; events: string[] } {
    const events: string[] = [];
    const hooks: SpaceHooks = {
      dir: '/g',
      timeoutMs,
      fits: (count) => count <= room.count,
      check: () => undefined,
      changed: () => undefined,
      usage: () => 'test',
      onEvent: (e) => { events.push(String(e.event)); },
    };
    return { w: new SpaceWaiters(hooks), events };
  }

  it('serves writers in the order they came; a woken writer that still does not fit keeps its place at the front', async () => {
    const room = { count: 0 };
    const { w, events } = waiters(room);
    const order: number[] = [];
    const big = w.wait(3, 0).then(() => order.push(3));
    const small = w.wait(1, 0).then(() => order.push(1));
    expect(w.length).toBe(2);
    room.count = 1;
    w.wake(); // the big writer is first and does not fit: nobody goes, the small one may not overtake it
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    room.count = 4;
    w.wake();
    await Promise.all([big, small]);
    expect(order).toEqual([3, 1]);
    expect(events).toEqual(['writer-blocked', 'writer-blocked']);
  });

  it('a writer whose deadline passes fails with JOURNAL_FULL and is told of; a stopped group fails waiting writers with GROUP_CLOSED', async () => {
    const { w, events } = waiters({ count: 0 }, 1);
    await expect(w.wait(1, 0)).rejects.toMatchObject({ code: 'JOURNAL_FULL' });
    expect(events).toEqual(['writer-blocked', 'writer-failed']);
    const s = waiters({ count: 0 });
    const p = s.w.wait(1, 0);
    s.w.stop();
    s.w.releaseAll();
    await expect(p).rejects.toMatchObject({ code: 'GROUP_CLOSED' });
  });
});

describe('stateEvent', () => {
  it.each<[GroupState, GroupState, string]>([
    ['active', 'nearly-full', 'journal-nearly-full'],
    ['nearly-full', 'full', 'journal-full'],
    ['full', 'suspended', 'journal-suspended'],
    ['suspended', 'resync-pending', 'journal-resumed'],
    ['resync-pending', 'active', 'journal-resync-complete'],
    ['resync-pending', 'suspended', 'journal-suspended'],
    ['full', 'active', 'journal-active'],
  ])('%s -> %s is told as %s', (was, now, event) => {
    expect(stateEvent(was, now)).toBe(event);
  });
});
