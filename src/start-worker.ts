/**
 * Starts a worker thread on a module beside the caller, as the running code is laid out: beside a
 * TypeScript caller run through tsx (tests, benchmarks, a checkout without a fresh build) the `.ts` source;
 * beside a compiled caller in dist/ (what `npm start` and the image run, on plain Node) the `.js` file tsc
 * wrote. Name a worker by this, never by a literal `.ts` or `.js` path: the other layout would not find it.
 *
 * On Node 20 a worker thread gets none of tsx's hooks: not those registered in the main thread (bin/
 * registers them there), and not `--import tsx` in its `execArgv` either (measured). So a `.ts` module is
 * started through a two-line module that registers tsx in the new thread first, then imports it; the
 * worker's `workerData`, messages and `import.meta.url` are its own as with a plain start.
 *
 *   const worker = startWorker('./publisher-worker', import.meta.url, { workerData });
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * @param name the module's path relative to the caller, without extension (`./publisher-worker`)
 * @param callerUrl the caller's `import.meta.url`
 */
export function startWorker(name: string, callerUrl: string, options: WorkerOptions = {}): Worker {
  const extension = extname(fileURLToPath(callerUrl));
  const url = new URL(`${name}${extension}`, callerUrl);
  if (extension !== '.ts') return new Worker(url, options);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const source = `import(${tsx}).then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(source, { ...options, eval: true });
}
