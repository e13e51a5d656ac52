import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The URL of a worker module (`*.worker.ts`, compiled by tsc like every
 * other module) named relative to the module that starts it: beside it in
 * dist/. When that module runs from its TypeScript source (under the test
 * runner), the worker is the compiled one in dist/: `npm test` builds first.
 */
export function workerUrl(from: string, name: string): URL {
  const url = new URL(name, from);
  if (!from.endsWith('.ts')) return url;
  const i = url.pathname.lastIndexOf('/src/');
  const built = new URL(url.href);
  built.pathname = `${url.pathname.slice(0, i)}/dist/${url.pathname.slice(i + '/src/'.length)}`;
  if (!existsSync(fileURLToPath(built))) throw new Error(`worker ${fileURLToPath(built)} is not built: run npm run build`);
  return built;
}
