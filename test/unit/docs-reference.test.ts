/**
 * The reference documents stay in step with the code: every code of ERROR_CODES is documented in
 * docs/reference/errors.md, and every variable of CONFIG_VARIABLES in docs/reference/configuration.md and
 * in the README's configuration table, with the default the code really uses.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CONFIG_VARIABLES } from '../../src/config.ts';
import { ERROR_CODES } from '../../src/errors.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

interface Table {
  header: string[];
  rows: string[][];
}

function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((cell) => cell.trim());
}

/** The pipe tables of a Markdown document (outside code fences), each as its header and body rows. */
function tables(markdown: string): Table[] {
  const found: Table[] = [];
  let current: string[][] | undefined;
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.trimStart().startsWith('```')) fenced = !fenced;
    if (!fenced && line.trimStart().startsWith('|')) {
      current ??= [];
      current.push(cells(line));
      continue;
    }
    if (current !== undefined) {
      found.push(toTable(current));
      current = undefined;
    }
  }
  if (current !== undefined) found.push(toTable(current));
  return found;
}

function toTable(lines: string[][]): Table {
  const [header = [], ...rest] = lines;
  const rows = rest.filter((row) => !row.every((cell) => /^:?-+:?$/.test(cell)));
  return { header: header.map((cell) => cell.toLowerCase()), rows };
}

/** `NAME` → NAME, or undefined when the cell is not a single code span. */
function codeSpan(cell: string | undefined): string | undefined {
  return /^`([^`]+)`$/.exec(cell ?? '')?.[1];
}

/** Rows of the tables whose header has all the given columns, keyed by the code span of the first cell. */
function rowsByName(markdown: string, columns: string[]): Map<string, Record<string, string>> {
  const byName = new Map<string, Record<string, string>>();
  for (const table of tables(markdown)) {
    if (!columns.every((column) => table.header.includes(column))) continue;
    for (const row of table.rows) {
      const name = codeSpan(row[0]);
      if (name === undefined) continue;
      assert.ok(!byName.has(name), `${name} is listed twice`);
      byName.set(name, Object.fromEntries(table.header.map((column, index) => [column, row[index] ?? ''])));
    }
  }
  return byName;
}

/** The text under a heading, up to the next heading of the same or a higher level. */
function section(markdown: string, level: number, title: string): string | undefined {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === `${'#'.repeat(level)} ${title}`);
  if (start < 0) return undefined;
  const end = lines.findIndex((line, index) => index > start && new RegExp(`^#{1,${level}} `).test(line));
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

function jsonBlocks(markdown: string): unknown[] {
  return [...markdown.matchAll(/```json\n([\s\S]*?)```/g)].map((match) => JSON.parse(match[1] ?? ''));
}

const errorCodes = Object.entries(ERROR_CODES);
const variables = Object.entries(CONFIG_VARIABLES);

describe('docs/reference/errors.md', () => {
  const doc = read('docs/reference/errors.md');
  const rows = rowsByName(doc, ['code', 'http status']);

  test('lists every error code with its HTTP status', () => {
    for (const [code, { status }] of errorCodes) {
      const row = rows.get(code);
      assert.ok(row, `error code ${code} is missing from the table of docs/reference/errors.md`);
      assert.equal(row['http status'], String(status), `${code} has HTTP status ${status}`);
      assert.ok((row.meaning ?? '').length > 0, `${code} has a meaning`);
    }
  });

  test('lists no code that the service does not have', () => {
    for (const code of rows.keys()) {
      assert.ok(Object.hasOwn(ERROR_CODES, code), `${code} is documented but not in ERROR_CODES`);
    }
  });

  test('has a section per code with its status and an example body', () => {
    for (const [code, { status }] of errorCodes) {
      const text = section(doc, 3, code);
      assert.ok(text !== undefined, `docs/reference/errors.md has no '### ${code}' section`);
      assert.match(text, new RegExp(`\\bHTTP ${status}\\b`), `the ${code} section states HTTP ${status}`);
      const examples = jsonBlocks(text) as { error?: { code?: unknown; message?: unknown } }[];
      assert.ok(examples.length > 0, `the ${code} section has a JSON example body`);
      for (const example of examples) {
        assert.equal(example.error?.code, code, `the example body of ${code} has that code`);
        assert.equal(typeof example.error?.message, 'string', `the example body of ${code} has a message`);
      }
    }
  });
});

describe('docs/reference/configuration.md', () => {
  const rows = rowsByName(read('docs/reference/configuration.md'), ['variable', 'default']);

  test('lists every variable with its default, form and description', () => {
    for (const [name, spec] of variables) {
      const row = rows.get(name);
      assert.ok(row, `${name} is missing from docs/reference/configuration.md`);
      assert.equal(row.default, `\`${spec.default}\``, `default of ${name}`);
      assert.equal(row['expected form'], spec.form, `expected form of ${name}`);
      assert.equal(row.description, spec.description, `description of ${name}`);
    }
  });

  test('lists no variable that the service does not read', () => {
    for (const name of rows.keys()) {
      assert.ok(Object.hasOwn(CONFIG_VARIABLES, name), `${name} is documented but not in CONFIG_VARIABLES`);
    }
  });
});

describe('README.md', () => {
  const readme = read('README.md');
  const rows = rowsByName(readme, ['variable', 'default']);

  test('the configuration table lists every variable with its default and description', () => {
    for (const [name, spec] of variables) {
      const row = rows.get(name);
      assert.ok(row, `${name} is missing from the README's configuration table`);
      assert.equal(row.default, `\`${spec.default}\``, `default of ${name}`);
      assert.equal(row.description, spec.description, `description of ${name}`);
    }
    for (const name of rows.keys()) {
      assert.ok(
        Object.hasOwn(CONFIG_VARIABLES, name),
        `${name} is in the README but not in CONFIG_VARIABLES`,
      );
    }
  });

  test('links the reference documents', () => {
    assert.match(readme, /\]\(docs\/reference\/errors\.md\)/);
    assert.match(readme, /\]\(docs\/reference\/configuration\.md\)/);
  });
});
