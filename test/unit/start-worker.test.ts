import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { startWorker } from '../../src/start-worker.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = new URL('../fixtures/', import.meta.url);

async function roundTrip(worker: Worker): Promise<unknown> {
  try {
    return await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.postMessage(21);
    });
  } finally {
    await worker.terminate();
  }
}

test('a compiled caller starts the compiled module beside it', async () => {
  const worker = startWorker('./echo-worker', new URL('caller.js', FIXTURES).href);
  assert.deepEqual(await roundTrip(worker), { value: 42, file: new URL('echo-worker.js', FIXTURES).href });
});

test('a TypeScript caller starts the .ts module beside it, with workerData', async () => {
  const worker = startWorker('./echo-worker', new URL('caller.ts', FIXTURES).href, { workerData: 1 });
  assert.deepEqual(await roundTrip(worker), { value: 42, file: new URL('echo-worker.ts', FIXTURES).href });
});

test('with tsx registered in the main thread only, as bin/telemetry-bus.js does, the .ts worker runs', () => {
  const caller = JSON.stringify(new URL('caller.ts', FIXTURES).href);
  const script = `
    import { register } from 'tsx/esm/api';
    register();
    const { startWorker } = await import('./src/start-worker.ts');
    const worker = startWorker('./echo-worker', ${caller});
    worker.once('message', (answer) => { console.log(JSON.stringify(answer)); worker.terminate(); });
    worker.postMessage(21);
  `;
  const output = execFileSync(process.execPath, ['--input-type=module', '--eval', script], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.deepEqual(JSON.parse(output), { value: 42, file: new URL('echo-worker.ts', FIXTURES).href });
});
