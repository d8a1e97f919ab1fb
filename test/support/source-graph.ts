/**
 * The import graph of src/ between folders: a node per folder directly under src/ (everything below it
 * counts as that folder) and one per file directly in src/ (config.ts, errors.ts … are each a layer of
 * their own: the composition root services.ts imports every folder, which imports errors.ts). Every
 * relative import counts, `import type` included: a folder that needs another's types depends on it.
 * Biome's noImportCycles sees cycles between files only; two folders can import each other through
 * different files without any file cycle.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/** For each node, the nodes it imports and, for each, one import that proves it (`file -> file`). */
export type FolderGraph = Map<string, Map<string, string>>;

function nodeOf(srcDir: string, file: string): string {
  const parts = relative(srcDir, file).split(sep);
  return parts.length > 1 ? `${parts[0]}/` : (parts[0] as string);
}

export function folderGraph(srcDir: string): FolderGraph {
  const graph: FolderGraph = new Map();
  const files = readdirSync(srcDir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(srcDir, name));
  for (const file of files) {
    const from = nodeOf(srcDir, file);
    const edges = graph.get(from) ?? new Map<string, string>();
    graph.set(from, edges);
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = resolve(dirname(file), fileName);
      const to = nodeOf(srcDir, target);
      if (to !== from && !edges.has(to)) {
        edges.set(to, `${relative(srcDir, file)} -> ${relative(srcDir, target)}`);
      }
    }
  }
  return graph;
}

/** The cycles of the graph: its strongly connected components of more than one node (Tarjan). */
export function cycles(graph: FolderGraph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node)?.keys() ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return components;
}
