import { describe, expect, it } from 'vitest';
import { distUrl as dist, nodeModule as child } from '../helpers.js';

describe('a verb that stops with its work unfinished', () => {
  it('fails, saying so, where it ended 0 having said nothing; a verb that settled, or chose its exit, keeps its code', () => {
    // Work that never settles and holds nothing open: the event loop empties under it, as it did under
    // jship import when its frame pool let go of a thread whose answer close was waiting for.
    const stuck = (json: boolean, then = ''): string => `
      import { failIfUnfinished } from ${dist('cli/unfinished.js')};
      const settled = failIfUnfinished(${json});
      new Promise(() => undefined).then(settled);
      ${then}
    `;
    const json = child(stuck(true));
    expect(json.status, json.err).toBe(1);
    const err = JSON.parse(json.out).error;
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/stopped before its work was done/);
    expect(err.hint).toMatch(/bug in jship.*run the same command again/);
    const human = child(stuck(false));
    expect(human.status).toBe(1);
    expect(human.out).toBe('');
    expect(human.err).toMatch(/^jship: jship stopped before its work was done.*\nhint: this is a bug/s);
    // An exit chosen on purpose (a signal's) keeps its code and says only what it said.
    const signalled = child(stuck(true, 'process.exit(143);'));
    expect(signalled).toMatchObject({ status: 143, out: '' });
    // Work that settled: nothing more is said, and the exit stays 0.
    const done = child(`
      import { failIfUnfinished } from ${dist('cli/unfinished.js')};
      const settled = failIfUnfinished(true);
      await Promise.resolve();
      settled();
    `);
    expect(done).toMatchObject({ status: 0, out: '', err: '' });
  });
});
