import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { BIN, jshipJson, jshipProc, tempDir } from '../helpers.js';

const SCHEMAS = new URL('../../docs/json/', import.meta.url).pathname;
const TS_KEY = /^(?:ts|.+Ts)$/;
const INT_KEY = /^(?:seq|.+Seq|records|.+Records|.+Pos|baseId|serial)$/;
const ISO_NS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

/**
 * The conventions of docs/JSON.md that a schema cannot say: every `xTs` has
 * its `xTime` beside it and they name the same instant; integers under the
 * integer names are numbers (strings only past 2^53); no fraction has more
 * than three decimals; no negative serials.
 */
function conventionProblems(v: unknown, path = '$'): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => conventionProblems(x, `${path}[${i}]`));
  if (v === null || typeof v !== 'object') return [];
  const out: string[] = [];
  const o = v as Record<string, unknown>;
  for (const [k, x] of Object.entries(o)) {
    const at = `${path}.${k}`;
    if (TS_KEY.test(k) && x !== null) {
      const tk = k === 'ts' ? 'time' : `${k.slice(0, -2)}Time`;
      if (typeof x !== 'string' || !/^\d+$/.test(x)) out.push(`${at}: a ns timestamp is a decimal string, got ${JSON.stringify(x)}`);
      else if (typeof o[tk] !== 'string' || !ISO_NS.test(o[tk] as string)) out.push(`${at}: no ISO ${tk} beside it`);
      else {
        const ns = BigInt(x);
        const iso = new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 19);
        if (!(o[tk] as string).startsWith(iso)) out.push(`${at}: ${tk} ${String(o[tk])} is not ${x}`);
      }
    }
    if (INT_KEY.test(k) && typeof x === 'string') out.push(`${at}: an integer as a string (${x})`);
    if (k === 'serial' && typeof x === 'number' && x < 0) out.push(`${at}: negative serial ${x}`);
    if (typeof x === 'number' && !Number.isInteger(x) && (String(x).split('.')[1]?.length ?? 0) > 3) out.push(`${at}: ${x} has more than three decimals`);
    out.push(...conventionProblems(x, at));
  }
  return out;
}

const lines = (text: string): unknown[] => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown);

describe('every --json output has the documented shape (docs/JSON.md, docs/json/*.schema.json)', () => {
  const dir = tempDir();

  it('each verb, run on the demo\'s sites, prints what its schema says; errors and event lines too', async () => {
    const got = new Map<string, unknown[]>();
    const take = (schema: string, v: unknown): void => { got.set(schema, [...(got.get(schema) ?? []), v]); };
    const run = (verb: string, args: string[], code = 0): any => {
      const r = jshipJson(verb, ...args);
      expect(r.code, `${verb} ${args.join(' ')}: ${JSON.stringify(r.out)} ${r.stderr}`).toBe(code);
      take(code === 0 ? verb : 'error', r.out);
      return r.out;
    };
    const d = join(dir, 'demo');
    run('demo', [d]);
    const g = join(d, 'primary', 'group');
    const rep = join(d, 'secondary', 'replica');
    const linked = join(d, 'secondary', 'linked-replica');
    const tapes = join(d, 'carried-tapes');
    // Offline, as a nightly job runs them.
    run('status', [g]);
    run('check', [g]);
    run('mark', [g, 'json-1']);
    run('scan', [g]);
    run('export', [g, '--to', tapes]);
    run('import', [rep, tapes, '--ack-out', join(dir, 'ack.json'), '--ack-key', join(g, 'ack.key')]);
    run('ack', [g, join(dir, 'ack.json')]);
    run('drill', [rep, '--exec', 'test -n "$JSHIP_NBD_URI_DB"']);
    for (const r of [rep, linked]) { run('timeline', [r]); run('tapes', [r]); run('check', [r]); }
    run('tapes', [tapes]);
    run('verify', [...readdirSync(tapes).filter((f) => f.endsWith('.tar.zst')).map((f) => join(tapes, f))]);
    run('restore', [rep, '--dry-run']);
    run('restore', [rep]);
    run('restore', [rep, '--marker', 'json-1', '--target', join(dir, 'at-mark/')]);
    run('restore', [linked, '--target', join(dir, 'linked/')]);
    run('restore', [rep, '--until', '@1'], 1);
    run('restore', [rep, '--until', 'yesterday'], 2);
    run('catalog', [rep, '--rebuild']);
    run('expire', [rep, '--keep-last', '1']);
    run('init', [join(dir, 'g2'), '--volume', `a=${join(dir, 'a.img')}:1M`, '--journal-size', '4M']);
    // A served group: its events, and the verbs that talk to the server.
    const sock = join(dir, 's.sock');
    const srv = await jshipProc('serve', g, '--socket', sock, '--link-listen', '127.0.0.1:0');
    try {
      run('status', [g]);
      run('bwlimit', [g, '64M']);
      run('mark', [g, 'json-2']);
      run('export', [g, '--to', tapes]);
      const pull = spawnSync(process.execPath, [BIN, 'link', 'pull', join(dir, 'pulled'), '--from', srv.ready.link, '--psk', join(g, 'link.key'), '--name', 'json-site', '--once', '--json'], { encoding: 'utf8' });
      expect(pull).toExit(0);
      const events = lines(pull.stdout) as Array<{ event: string; percent?: number; totalBytes?: number }>;
      for (const e of events) take('link', e);
      // The new secondary's base came with its progress (issue 19 item 8): every tenth of the volumes, to the whole.
      const base = events.filter((e) => e.event === 'base-progress');
      expect(base.length).toBeGreaterThanOrEqual(2);
      expect(base.map((e) => e.percent)).toEqual([...base.map((e) => e.percent)].sort((a, b) => a! - b!));
      expect(base.at(-1)).toMatchObject({ percent: 100, bytes: 12 * 1024 * 1024, totalBytes: 12 * 1024 * 1024 });
    } finally {
      expect(await srv.stop()).toBe(0);
    }
    for (const e of srv.events) take('serve', e);
    const mnt = await jshipProc('mount', rep, '--marker', 'json-1', '--socket', join(dir, 'm.sock'));
    expect(await mnt.stop()).toBe(0);
    for (const e of mnt.events) take('mount', e);
    // Takeover and failback, on the small group made above: a replica of it pulled, promoted, and the group demoted to follow it.
    const g2 = join(dir, 'g2');
    const a2 = await jshipProc('link', 'serve', g2, '--listen', '127.0.0.1:0');
    const r2 = join(dir, 'r2');
    try {
      const p2 = spawnSync(process.execPath, [BIN, 'link', 'pull', r2, '--from', a2.ready.listening, '--psk', join(g2, 'link.key'), '--name', 'json-b', '--once', '--json'], { encoding: 'utf8' });
      expect(p2).toExit(0);
    } finally {
      expect(await a2.stop()).toBe(0);
    }
    const promoted = join(dir, 'promoted');
    run('promote', [r2, '--to', promoted, '--journal-size', '4M', '--psk', join(g2, 'link.key'), '--ack-key', join(g2, 'ack.key')], 1);
    run('promote', [r2, '--to', promoted, '--journal-size', '4M', '--psk', join(g2, 'link.key'), '--ack-key', join(g2, 'ack.key'), '--force']);
    const b = await jshipProc('link', 'serve', promoted, '--listen', '127.0.0.1:0');
    try {
      run('demote', [g, '--follow', b.ready.listening, '--name', 'json-a'], 1);
      run('demote', [g2, '--follow', b.ready.listening, '--name', 'json-a']);
      run('status', [g2]);
    } finally {
      expect(await b.stop()).toBe(0);
    }
    for (const e of b.events) take('link', e);
    // Failback by tapes: the first demote asks in a file, the new primary exports a resync base for it, the second applies it.
    const g3 = join(dir, 'g3');
    run('init', [g3, '--volume', `c=${join(dir, 'c.img')}:1M`, '--journal-size', '4M']);
    run('export', [g3, '--to', join(dir, 't3a/'), '--base']);
    run('import', [join(dir, 'r3'), join(dir, 't3a')]);
    run('promote', [join(dir, 'r3'), '--to', join(dir, 'p3'), '--journal-size', '4M', '--force']);
    run('mark', [join(dir, 'p3'), 'at-p3']);
    run('export', [join(dir, 'p3'), '--to', join(dir, 't3b/')]);
    const asked = run('demote', [g3, '--follow', join(dir, 't3b')]);
    expect(asked.applied).toBe(null);
    run('status', [g3]);
    run('export', [join(dir, 'p3'), '--to', join(dir, 't3c/'), '--resync-for', asked.awaiting.request]);
    expect(run('demote', [g3, '--follow', join(dir, 't3c')]).applied.proved).toBe(true);

    const ajv = new Ajv({ allErrors: true, strict: true });
    ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, 'defs.schema.json'), 'utf8')) as object);
    const files = readdirSync(SCHEMAS).filter((f) => f.endsWith('.schema.json') && f !== 'defs.schema.json').map((f) => f.slice(0, -'.schema.json'.length));
    // Every verb has its schema, and every schema was exercised.
    const verbs = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' }).stdout.split('Commands:')[1]!.split('\n').map((l) => /^ {2}(\S+)/.exec(l)?.[1]).filter((x): x is string => x !== undefined && x !== 'help');
    expect(files.filter((f) => f !== 'error').sort()).toEqual(verbs.sort());
    expect([...got.keys()].sort()).toEqual(files.sort());
    for (const [name, values] of got) {
      const validate = ajv.compile(JSON.parse(readFileSync(join(SCHEMAS, `${name}.schema.json`), 'utf8')) as object);
      for (const v of values) {
        expect(validate(v), `${name}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(v).slice(0, 2000)}`).toBe(true);
        expect(conventionProblems(v), name).toEqual([]);
      }
    }
  }, 300_000);

  it('the convention checker itself finds what it is for', () => {
    expect(conventionProblems({ seq: '12', firstTs: '1796276531201000000', firstTime: '2026-12-03T05:42:11.201000000Z' })).toEqual(['$.seq: an integer as a string (12)']);
    expect(conventionProblems({ a: [{ lastTs: '1796276531201000000' }] })).toEqual(['$.a[0].lastTs: no ISO lastTime beside it']);
    expect(conventionProblems({ ts: '1796276531201000000', time: '2020-01-01T00:00:00.000000000Z' })).toHaveLength(1);
    expect(conventionProblems({ serial: -1, rate: 0.19393042190969653 })).toHaveLength(2);
    expect(conventionProblems({ seq: 12, ts: '1796276531201000000', time: '2026-12-03T05:42:11.201000000Z', rate: 0.194 })).toEqual([]);
  });
});
