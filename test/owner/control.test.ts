import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { JshipError } from '../../src/core/errors.js';
import { callOwner } from '../../src/owner/control-client.js';
import { decodeControl, encodeControl } from '../../src/owner/control-codec.js';
import { ControlServer, controlSocketPath } from '../../src/owner/control-server.js';
import { tempDir } from '../helpers.js';

/** Sends raw bytes to the control socket and collects every line of the answer. */
function raw(path: string, bytes: string | Buffer): Promise<unknown[]> {
  return new Promise((resolve) => {
    const s = connect(path);
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { text += d; });
    s.on('close', () => resolve(text.split('\n').filter(Boolean).map((l) => decodeControl(l))));
    s.on('error', () => undefined);
    s.write(bytes);
  });
}

describe('control socket', () => {
  const dir = tempDir();

  it('bigints survive the codec; plain objects with a $big key of another shape do not turn into bigints', () => {
    const msg = { type: 'result' as const, result: { seq: 2n ** 70n, ts: -5n, n: 3, odd: { $big: 'x' }, two: { $big: '1', other: 1 } } };
    expect(decodeControl(encodeControl(msg).trim())).toEqual(msg);
    expect(() => decodeControl('{nope')).toThrow(JshipError);
  });

  it('answers one operation with progress and a result; refuses garbage, unknown operations and oversize lines, and goes on serving', async () => {
    const log: Array<{ event: string }> = [];
    const server = new ControlServer({
      echo: async (args, progress) => {
        progress(1, 2);
        progress(2, 2);
        return { got: args, big: 12345678901234567890n };
      },
      fail: async () => {
        throw new JshipError('MARKER_EXISTS', 'marker "x" exists', { hint: 'pick another name' });
      },
    }, (m) => log.push(m));
    const path = await server.listen(dir, 'test-group');
    expect(path).toBe(await controlSocketPath(dir));
    try {
      expect(await raw(path, 'this is not json\n')).toEqual([{ type: 'error', code: 'CONTROL_PROTOCOL', message: expect.stringMatching(/not JSON/), hint: expect.any(String), details: {} }]);
      expect(await raw(path, '[1,2]\n')).toMatchObject([{ type: 'error', code: 'CONTROL_PROTOCOL' }]);
      expect(await raw(path, `${JSON.stringify({ op: 'rm -rf', args: {} })}\n`)).toMatchObject([{ type: 'error', code: 'CONTROL_PROTOCOL', message: expect.stringMatching(/unknown control operation/) }]);
      expect(await raw(path, Buffer.alloc(2 * 1024 * 1024, 0x61))).toMatchObject([{ type: 'error', code: 'CONTROL_PROTOCOL', message: expect.stringMatching(/longer than/) }]);
      expect(log.length).toBe(4);

      const progress: Array<[number, number]> = [];
      const locked = new JshipError('GROUP_LOCKED', 'locked');
      const r = await callOwner(dir, 'echo', { name: 'x' }, locked, (d, t) => progress.push([d, t]));
      expect(r).toEqual({ got: { name: 'x' }, big: 12345678901234567890n });
      expect(progress.at(-1)).toEqual([2, 2]);
      await expect(callOwner(dir, 'fail', {}, locked)).rejects.toMatchObject({ code: 'MARKER_EXISTS', hint: 'pick another name' });
    } finally {
      await server.close();
    }
    // No owner on the socket: the caller gets the lock error that sent it there, told that the process
    // holding the group takes no requests (its hint said to talk to it through its control socket).
    const locked = new JshipError('GROUP_LOCKED', 'in use by process 1', { details: { pid: 1 } });
    await expect(callOwner(dir, 'echo', {}, locked)).rejects.toMatchObject({
      code: 'GROUP_LOCKED', message: 'in use by process 1', details: { pid: 1 }, hint: expect.stringMatching(/one-shot command .* run this again once it has ended/),
    });
  });
});
