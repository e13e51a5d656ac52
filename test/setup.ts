import { expect } from 'vitest';

/**
 * `expect(result).toExit(code)`: a command's exit code (`code`, or
 * `status` for spawnSync), and on failure what it said (`out`, `stdout`,
 * `stderr`), so that a failure in CI under load names its cause rather than
 * "expected 1 to be 0".
 */
interface ExitMatchers {
  toExit: (code: number) => void;
}

declare module 'vitest' {
  interface Matchers<T = any> extends ExitMatchers {}
}

const text = (v: unknown): string => (typeof v === 'string' ? v : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : JSON.stringify(v));
const tail = (s: string): string => (s.length > 4000 ? `…${s.slice(-4000)}` : s);

expect.extend({
  toExit(received: { code?: number | null; status?: number | null; out?: unknown; stdout?: unknown; stderr?: unknown }, code: number) {
    const got = received.code !== undefined ? received.code : received.status;
    const said = (['out', 'stdout', 'stderr'] as const)
      .filter((k) => received[k] !== undefined && received[k] !== null && text(received[k]).trim() !== '')
      .map((k) => `${k}: ${tail(text(received[k]).trim())}`);
    return {
      pass: got === code,
      message: () => `expected exit code ${this.isNot ? 'other than ' : ''}${code}, got ${got}${said.length > 0 ? `\n${said.join('\n')}` : ' (it said nothing)'}`,
    };
  },
});
