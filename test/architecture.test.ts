import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = new URL('../src/', import.meta.url).pathname;

/**
 * Which folders each folder of src/ may import: the pipe capture → journal →
 * tape/link → replica → restore, with the owner (the process that owns a
 * group) wiring the stages and the CLI on top. No stage imports one
 * downstream of it.
 */
const ALLOWED: Record<string, string[]> = {
  core: [],
  io: ['core'],
  volume: ['core', 'io'],
  journal: ['core', 'io', 'volume'],
  nbd: ['core', 'io', 'journal'],
  // Stores (s3://) register with tape/stores.ts: tape/ never imports them.
  tape: ['core', 'io', 'journal'],
  s3: ['core', 'tape'],
  // The replica reads journal records' shapes and, promoted, creates a journal group (replica/promote.ts).
  // The replica serves points in time over NBD (mount): it uses the NBD export interface.
  replica: ['core', 'io', 'journal', 'nbd', 'tape'],
  link: ['core', 'io', 'journal', 'replica', 'tape'],
  owner: ['core', 'io', 'journal', 'link', 'nbd', 's3', 'tape'],
  demo: ['core', 'io', 'journal', 'link', 'owner', 'replica', 'tape'],
  cli: ['core', 'demo', 'io', 'journal', 'link', 'nbd', 'owner', 'replica', 's3', 'tape'],
};

function importsOf(folder: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of readdirSync(join(SRC, folder)).filter((n) => n.endsWith('.ts'))) {
    const text = readFileSync(join(SRC, folder, f), 'utf8');
    for (const m of text.matchAll(/from '\.\.\/([a-z0-9-]+)\//g)) {
      const to = m[1] as string;
      out.set(to, [...(out.get(to) ?? []), f]);
    }
  }
  return out;
}

describe('layers', () => {
  it('every folder imports only the folders upstream of it; nbd/ is only the NBD protocol and server', () => {
    const folders = readdirSync(SRC, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    expect(folders).toEqual(Object.keys(ALLOWED).sort());
    for (const folder of folders) {
      for (const [to, files] of importsOf(folder)) {
        expect(ALLOWED[folder], `src/${folder}/${files.join(', ')} import${files.length > 1 ? '' : 's'} src/${to}/`).toContain(to);
      }
    }
  });

  it('the library speaks in parameters: no usage error outside cli/ names a command-line flag (core/errors.ts param())', () => {
    const offenders: string[] = [];
    for (const folder of readdirSync(SRC).filter((d) => d !== 'cli' && !d.includes('.'))) {
      for (const f of readdirSync(join(SRC, folder)).filter((n) => n.endsWith('.ts'))) {
        const text = readFileSync(join(SRC, folder, f), 'utf8');
        for (const m of text.matchAll(/new JshipError\('USAGE',[\s\S]*?\);\n/g)) {
          if (/(?<![\w-])--[a-z]/.test(m[0])) offenders.push(`src/${folder}/${f}: ${m[0].slice(0, 100)}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });

  it('no module awaits at its top level, nor the launcher: V8 crashed now and then loading such a module in a worker (nodejs/node#53238)', () => {
    const offenders: string[] = [];
    const modules = readdirSync(SRC).filter((d) => !d.includes('.')).flatMap((folder) => readdirSync(join(SRC, folder)).filter((n) => n.endsWith('.ts')).map((f) => `src/${folder}/${f}`));
    for (const path of [...modules, 'bin/jship']) {
      const file = ts.createSourceFile(path, readFileSync(join(SRC, '..', path), 'utf8'), ts.ScriptTarget.ES2022, true);
      const visit = (node: ts.Node): void => {
        if (ts.isFunctionLike(node) || ts.isClassStaticBlockDeclaration(node)) return;
        if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier)) {
          offenders.push(`${path}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`);
        }
        ts.forEachChild(node, visit);
      };
      visit(file);
    }
    expect(offenders).toEqual([]);
  });
});
