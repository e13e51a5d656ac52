import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('expect(result).toExit(code) (test/setup.ts)', () => {
  it('passes on the code, from `code` or from spawnSync\'s `status`', () => {
    expect({ code: 0, out: null }).toExit(0);
    expect(spawnSync('sh', ['-c', 'exit 3'])).toExit(3);
    expect({ code: 2 }).not.toExit(0);
  });

  it('fails naming the code it got and what the command said', () => {
    expect(() => expect({ code: 1, out: { error: { code: 'BASE_IN_PROGRESS' } }, stderr: '' }).toExit(0))
      .toThrow(/expected exit code 0, got 1\nout: \{"error":\{"code":"BASE_IN_PROGRESS"\}\}$/);
    const r = spawnSync('sh', ['-c', 'echo half written >&2; exit 1']);
    expect(() => expect(r).toExit(0)).toThrow(/got 1\nstderr: half written$/);
    expect(() => expect({ status: null }).toExit(0)).toThrow(/got null \(it said nothing\)/);
  });
});
