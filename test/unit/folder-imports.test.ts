import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
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

/**
 * The folder diagram of docs/architecture.md ("The folders of src/ and their imports"): its boxes, each
 * named by a folder (`bus/`) or a root file (`config.ts`), and its arrows, by those names. The box
 * `leaves` stands for the root files that import no folder; arrows to it are not drawn.
 */
function diagram(markdown: string): { boxes: Map<string, string>; arrows: Set<string> } {
  const heading = '## The folders of src/ and their imports';
  const start = markdown.indexOf(heading);
  assert.ok(start >= 0, `docs/architecture.md has no '${heading}' section`);
  const block = /```mermaid\n([\s\S]*?)```/.exec(markdown.slice(start))?.[1];
  assert.ok(block !== undefined, 'that section has a mermaid diagram');
  const boxes = new Map<string, string>();
  for (const [, id, label] of block.matchAll(/^\s*(\w+)\["([^"]+)"\]\s*$/gm)) {
    boxes.set(id as string, id === 'leaves' ? 'leaves' : (label as string));
  }
  const arrows = new Set<string>();
  for (const [, from, to] of block.matchAll(/^\s*(\w+)\s*-->\s*(\w+)\s*$/gm)) {
    const a = boxes.get(from as string);
    const b = boxes.get(to as string);
    assert.ok(
      a !== undefined && b !== undefined,
      `the arrow ${from} --> ${to} joins boxes that are declared`,
    );
    arrows.add(`${a} -> ${b}`);
  }
  return { boxes, arrows };
}

test('docs/architecture.md draws every folder of src/, and exactly the imports between its boxes', () => {
  const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');
  const { boxes, arrows } = diagram(doc);
  const named = new Set(boxes.values());
  const folders = readdirSync(SRC, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => `${entry.name}/`);
  const missing = folders.filter((folder) => !named.has(folder));
  assert.deepEqual(missing, [], `folders of src/ the diagram does not name: ${missing.join(', ')}`);
  const graph = folderGraph(SRC);
  for (const node of named) {
    if (node !== 'leaves') assert.ok(graph.has(node), `the diagram names ${node}, which src/ does not have`);
  }
  // What the diagram leaves to the `leaves` box must be leaves: root files importing no box.
  for (const [node, imports] of graph) {
    if (named.has(node)) continue;
    const up = [...imports.keys()].filter((to) => named.has(to));
    assert.deepEqual(up, [], `${node} is drawn as a leaf but imports ${up.join(', ')}`);
  }
  const actual = new Set<string>();
  for (const [from, imports] of graph) {
    if (!named.has(from)) continue;
    for (const to of imports.keys()) if (named.has(to)) actual.add(`${from} -> ${to}`);
  }
  const notDrawn = [...actual].filter((arrow) => !arrows.has(arrow));
  const wrong = [...arrows].filter((arrow) => !actual.has(arrow));
  assert.deepEqual(
    notDrawn,
    [],
    `imports the diagram does not draw (${notDrawn.map((a) => graph.get(a.split(' -> ')[0] as string)?.get(a.split(' -> ')[1] as string)).join('; ')})`,
  );
  assert.deepEqual(wrong, [], 'arrows no import makes (or drawn the wrong way)');
});
