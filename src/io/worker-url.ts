import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

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

/**
 * Starts a worker that does not keep the process alive while it is idle:
 * its listeners are put on first, then it is unref'd (adding a `'message'`
 * listener refs a worker again, so an `unref` before them did nothing and
 * an idle pool held its process for ever). Its owner refs it while a
 * caller waits for an answer, and unrefs it once it has answered them all.
 */
export function startIdleWorker<M>(url: URL, options: WorkerOptions, on: { message: (m: M) => void; error: (e: Error) => void; exit?: (code: number) => void }): Worker {
  const w = new Worker(url, { execArgv: [], ...options });
  w.on('message', on.message);
  w.on('error', on.error);
  if (on.exit) w.on('exit', on.exit);
  w.unref();
  return w;
}

/**
 * Stops a worker started by startIdleWorker, keeping the process alive until
 * it has stopped. Its owner must not unref it once the stop has begun (an
 * answer still on its way did that: nothing kept the process alive, and it
 * ended with the stop, and its caller, unsettled).
 */
export async function stopWorker(w: Worker): Promise<void> {
  w.ref();
  await w.terminate();
}
