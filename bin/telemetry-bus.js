#!/usr/bin/env node
// Runs the compiled JavaScript in dist/ (`npm run build`, which `npm ci` runs as the prepare script) on
// plain Node. Without dist/, or when a file in src/ is newer than the build (a checkout being edited, or a
// pull since the last `npm ci`), it runs the TypeScript sources through tsx's loader instead, so an old
// build never stands in for the code beside it. Checking costs one stat per source file (about 1 ms).
import { existsSync, readdirSync, statSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
const sources = new URL('../src/', import.meta.url);

function newerThan(dir, time) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = new URL(entry.isDirectory() ? `${entry.name}/` : entry.name, dir);
    if (entry.isDirectory() ? newerThan(path, time) : statSync(path).mtimeMs > time) return true;
  }
  return false;
}

if (existsSync(built) && !(existsSync(sources) && newerThan(sources, statSync(built).mtimeMs))) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
