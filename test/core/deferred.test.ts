import { describe, expect, it } from 'vitest';
import { deferred, settlesWithin } from '../../src/core/deferred.js';
import { distUrl, nodeModule } from '../helpers.js';

describe('settlesWithin', () => {
  it('says whether the promise settled, either way, before the time was up', async () => {
    const d = deferred<void>();
    const pending = settlesWithin(d.promise, 60_000);
    d.reject(new Error('gone'));
    expect(await pending).toBe(true);
    expect(await settlesWithin(Promise.resolve(), 60_000)).toBe(true);
    expect(await settlesWithin(new Promise(() => undefined), 1)).toBe(false);
  });

  it('holds the process open until the time is up: a wait nothing else holds ends in false, not in a process that stops midway', () => {
    // Before, the timer was unref'd: node ended the process with the await unsettled (exit 13) and printed nothing.
    const r = nodeModule(`import { settlesWithin } from ${distUrl('core/deferred.js')};
      const settled = await settlesWithin(new Promise(() => undefined), 50);
      console.log('settled', settled);`);
    expect(r, r.err).toMatchObject({ status: 0, out: 'settled false\n' });
  });
});
