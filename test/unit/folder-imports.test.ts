import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cycles, type FolderGraph, folderGraph } from '../support/source-graph.ts';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

test('the folders of src/ import each other in one direction only', () => {
  const graph = folderGraph(SRC);
  const found = cycles(graph).map((component) =>
    [
      component.join(' <-> '),
      ...component.flatMap((from) =>
        component.flatMap((to) => {
          const proof = graph.get(from)?.get(to);
          return proof === undefined ? [] : [`  ${proof}`];
        }),
      ),
    ].join('\n'),
  );
  assert.deepEqual(found, [], `folder import cycles (move the shared piece down):\n${found.join('\n')}`);
});

test('the graph sees the imports it must see, and the check finds a cycle through different files', () => {
  const graph = folderGraph(SRC);
  // Known one-way imports: a folder's file reaching another folder, and a folder reaching a root file.
  assert.match(graph.get('http/')?.get('registry/') ?? '', /^http\/.+\.ts -> registry\/.+\.ts$/);
  assert.ok(graph.get('bus/')?.has('errors.ts'));
  assert.ok(graph.get('services.ts')?.has('bus/'));
  const circular: FolderGraph = new Map([
    ['a/', new Map([['b/', 'a/x.ts -> b/y.ts']])],
    ['b/', new Map([['c.ts', 'b/z.ts -> c.ts']])],
    ['c.ts', new Map([['a/', 'c.ts -> a/w.ts']])],
    ['d/', new Map([['a/', 'd/v.ts -> a/x.ts']])],
  ]);
  assert.deepEqual(cycles(circular), [['a/', 'b/', 'c.ts']]);
});
