import { describe, expect, it } from 'vitest';
import { BufferLender } from '../../src/core/buffer-lender.js';

describe('BufferLender', () => {
  it('lends a buffer given back again (the last given back first), by size, and nothing else', () => {
    const l = new BufferLender(1024);
    const a = l.lend(256);
    const b = l.lend(256);
    const c = l.lend(512);
    expect(a.length).toBe(256);
    expect(a.buffer === b.buffer).toBe(false);
    l.giveBack(a);
    l.giveBack(b);
    expect(l.lend(256).buffer === b.buffer).toBe(true);
    expect(l.lend(256).buffer === a.buffer).toBe(true);
    // Another size is not taken for it; a fresh one comes.
    l.giveBack(c);
    expect([a.buffer, b.buffer, c.buffer].includes(l.lend(128).buffer)).toBe(false);
    expect(l.lend(512).buffer === c.buffer).toBe(true);
  });

  it('ignores a foreign buffer, a view not from the start, a second give-back, and keeps no more than its bytes', () => {
    const l = new BufferLender(512);
    const a = l.lend(256);
    l.giveBack(Buffer.alloc(256));
    l.giveBack(a.subarray(1));
    expect(l.lend(256).buffer === a.buffer).toBe(false);
    // A view from its start is the buffer's memory: taken back, once.
    l.giveBack(a.subarray(0, 100));
    l.giveBack(a);
    const again = l.lend(256);
    expect(again.buffer === a.buffer).toBe(true);
    expect(again.length).toBe(256);
    expect(l.lend(256).buffer === a.buffer).toBe(false);
    // Past 512 bytes kept, what is given back is left to the collector.
    const [x, y, z] = [l.lend(256), l.lend(256), l.lend(256)];
    for (const b of [x, y, z]) l.giveBack(b);
    const lent = [l.lend(256), l.lend(256), l.lend(256)].map((b) => b.buffer);
    expect(lent.filter((m) => m === x.buffer || m === y.buffer || m === z.buffer)).toHaveLength(2);
  });
});
