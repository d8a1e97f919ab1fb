/**
 * The reference documents stay in step with the code: every code of ERROR_CODES is documented in
 * docs/reference/errors.md, every variable of CONFIG_VARIABLES in docs/reference/configuration.md with
 * the default the code really uses (a component's exported default where it has one), and every type of
 * EVENT_TYPES in docs/events/README.md with the exchange and queues the topology gives it. The index
 * docs/README.md links every document under docs/; every relative link of README.md and of the Markdown
 * under docs/ resolves, to a file that exists and, with an #anchor, to a heading it has. The README
 * stays a landing page: under 250 lines.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { API_KEY_STORE_DEFAULTS } from '../../src/auth/api-key-store.ts';
import { EVENT_TYPES } from '../../src/bus/event-types.ts';
import { SPOOL_DEFAULTS } from '../../src/bus/spool/spool.ts';
import { SPOOL_PUBLISHER_DEFAULTS } from '../../src/bus/spool-publisher.ts';
import { buildTopology, DEFAULT_RETRY_DELAYS_MS, exchangeFor, queuesFor } from '../../src/bus/topology.ts';
import { DEFAULT_CACHE_MAX_BYTES } from '../../src/cache-budget.ts';
import { CONFIG_VARIABLES } from '../../src/config.ts';
import { APPLIED_EVENTS_RETENTION_DEFAULTS } from '../../src/consumers/applied-events-pruner.ts';
import { CONSUMER_RUNTIME_DEFAULTS } from '../../src/consumers/consumer-runtime.ts';
import { ROTATING_FILE_DEFAULTS } from '../../src/consumers/logging/rotating-file.ts';
import { METRICS_PRUNER_DEFAULTS } from '../../src/consumers/metrics/metrics-pruner.ts';
import { POOL_DEFAULTS } from '../../src/db/create-pool.ts';
import { ERROR_CODES } from '../../src/errors.ts';
import { SERVER_LIMIT_DEFAULTS } from '../../src/http/server-limits.ts';
import { LEDGER_WRITER_DEFAULTS } from '../../src/ledger/ledger-writer.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const docsDir = fileURLToPath(new URL('../../docs/', import.meta.url));

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

/**
 * The variables whose default is a component's own (exported next to its options, with its unit): the
 * reference must show that value, so a default changed in the component shows in the docs or fails here.
 */
const COMPONENT_DEFAULTS: Record<string, string | number | readonly number[]> = {
  DB_POOL_MAX: POOL_DEFAULTS.max,
  CACHE_MAX_BYTES: DEFAULT_CACHE_MAX_BYTES,
  HTTP_REQUEST_TIMEOUT_MS: SERVER_LIMIT_DEFAULTS.requestTimeoutMs,
  HTTP_HEADERS_TIMEOUT_MS: SERVER_LIMIT_DEFAULTS.headersTimeoutMs,
  HTTP_CONNECTION_TIMEOUT_MS: SERVER_LIMIT_DEFAULTS.connectionTimeoutMs,
  HTTP_KEEP_ALIVE_TIMEOUT_MS: SERVER_LIMIT_DEFAULTS.keepAliveTimeoutMs,
  HTTP_MAX_CONNECTIONS: SERVER_LIMIT_DEFAULTS.maxConnections,
  API_KEY_CACHE_TTL_MS: API_KEY_STORE_DEFAULTS.cacheTtlMs,
  SPOOL_MAX_BYTES: SPOOL_DEFAULTS.maxBytes,
  SPOOL_SEGMENT_BYTES: SPOOL_DEFAULTS.segmentBytes,
  SPOOL_FSYNC_INTERVAL_MS: SPOOL_DEFAULTS.fsyncIntervalMs,
  LEDGER_FLUSH_INTERVAL_MS: LEDGER_WRITER_DEFAULTS.intervalMs,
  RABBITMQ_HEARTBEAT_S: SPOOL_PUBLISHER_DEFAULTS.heartbeatSeconds,
  PUBLISH_WINDOW: SPOOL_PUBLISHER_DEFAULTS.window,
  PUBLISH_CONFIRM_TIMEOUT_MS: SPOOL_PUBLISHER_DEFAULTS.confirmTimeoutMs,
  RETRY_DELAYS_MS: DEFAULT_RETRY_DELAYS_MS,
  CONSUMER_PREFETCH: CONSUMER_RUNTIME_DEFAULTS.prefetch,
  CONSUMER_BATCH_SIZE: CONSUMER_RUNTIME_DEFAULTS.batchSize,
  ERROR_LOG_MAX_BYTES: ROTATING_FILE_DEFAULTS.maxFileBytes,
  ERROR_LOG_MAX_FILES: ROTATING_FILE_DEFAULTS.maxFiles,
  METRICS_RAW_RETENTION_DAYS: METRICS_PRUNER_DEFAULTS.rawRetentionDays,
  METRICS_ROLLUP_RETENTION_DAYS: METRICS_PRUNER_DEFAULTS.rollupRetentionDays,
  METRICS_PRUNE_INTERVAL_MS: METRICS_PRUNER_DEFAULTS.intervalMs,
  APPLIED_EVENTS_RETENTION_DAYS: APPLIED_EVENTS_RETENTION_DEFAULTS.retentionDays,
};

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

  test("shows the component's exported default for the variables a component owns", () => {
    for (const [name, value] of Object.entries(COMPONENT_DEFAULTS)) {
      assert.ok(Object.hasOwn(CONFIG_VARIABLES, name), `${name} is a variable`);
      const expected = Array.isArray(value) ? value.join(',') : String(value);
      assert.equal(rows.get(name)?.default, `\`${expected}\``, `documented default of ${name}`);
    }
  });
});

/** `` `NAME` `` or `` [`NAME`](#anchor) `` → NAME; undefined for anything else. */
function linkedCodeSpan(cell: string | undefined): string | undefined {
  return codeSpan(cell) ?? /^\[`([^`]+)`\]\(#[^)]*\)$/.exec(cell ?? '')?.[1];
}

/** `` `a`, `b` `` → [a, b]. */
function codeSpans(cell: string | undefined): string[] {
  return [...(cell ?? '').matchAll(/`([^`]+)`/g)].map((match) => match[1] ?? '');
}

describe('docs/events/README.md', () => {
  const doc = read('docs/events/README.md');
  const topology = buildTopology();
  const routing = new Map<string, Record<string, string>>();
  for (const table of tables(doc)) {
    if (!['event type', 'exchange', 'queues'].every((column) => table.header.includes(column))) continue;
    for (const row of table.rows) {
      const type = linkedCodeSpan(row[0]);
      if (type === undefined) continue;
      assert.ok(!routing.has(type), `${type} is listed twice in the routing table`);
      routing.set(type, Object.fromEntries(table.header.map((column, index) => [column, row[index] ?? ''])));
    }
  }

  test('lists every event type with the exchange and queues the topology gives it', () => {
    for (const type of EVENT_TYPES) {
      const row = routing.get(type);
      assert.ok(row, `event type ${type} is missing from the routing table of docs/events/README.md`);
      assert.equal(row.exchange, `\`${exchangeFor(type)}\``, `exchange of ${type}`);
      assert.deepEqual(
        codeSpans(row.queues).sort(),
        queuesFor(topology, exchangeFor(type), type).sort(),
        `queues of ${type}`,
      );
    }
  });

  test('lists no event type that the bus does not have', () => {
    for (const type of routing.keys()) {
      assert.ok(
        (EVENT_TYPES as readonly string[]).includes(type),
        `${type} is documented but not in EVENT_TYPES`,
      );
    }
  });

  test('has a section and a JSON Schema file per event type', () => {
    for (const type of EVENT_TYPES) {
      assert.ok(section(doc, 2, type) !== undefined, `docs/events/README.md has no '## ${type}' section`);
      assert.ok(existsSync(join(docsDir, 'events', `${type}.json`)), `docs/events/${type}.json exists`);
    }
  });
});

/** The relative link targets of a Markdown document (outside code fences), without their #anchor. */
function relativeLinks(markdown: string): string[] {
  const prose = markdown.replace(/```[\s\S]*?```/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1] ?? '')
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('#'))
    .map((target) => decodeURI(target.split('#')[0] ?? ''));
}

/** Every Markdown file under docs/, relative to docs/. */
function markdownUnder(directory: string): string[] {
  return readdirSync(directory, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.md'))
    .map((name) => relative(docsDir, join(directory, name)));
}

describe('docs/README.md (the index)', () => {
  const index = read('docs/README.md');
  const linked = relativeLinks(index).map((target) => relative(docsDir, join(docsDir, target)));

  test('every document it links exists', () => {
    assert.ok(linked.length > 0, 'docs/README.md links some documents');
    for (const target of linked) {
      assert.ok(existsSync(join(docsDir, target)), `docs/README.md links ${target}, which does not exist`);
    }
  });

  test('links every Markdown document under docs/', () => {
    for (const name of markdownUnder(docsDir)) {
      if (name === 'README.md') continue;
      assert.ok(linked.includes(name), `docs/README.md does not link docs/${name}`);
    }
  });

  test('the relative links of the documents it links resolve', () => {
    for (const name of linked.filter(
      (target) => target.endsWith('.md') && existsSync(join(docsDir, target)),
    )) {
      const path = join(docsDir, name);
      for (const target of relativeLinks(readFileSync(path, 'utf8'))) {
        assert.ok(
          existsSync(join(dirname(path), target)),
          `docs/${name} links ${target}, which does not exist`,
        );
      }
    }
  });

  test('the README links the index', () => {
    assert.match(read('README.md'), /\]\(docs\/README\.md\)/);
  });
});

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a Markdown document's headings (outside code fences); a repeated one gets -1, -2 … */
function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of markdown.replace(/```[\s\S]*?```/g, '').split('\n')) {
    const heading = /^#{1,6} (.+)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = anchorOf(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}

/** Every relative link of a Markdown document (outside code fences), with its #anchor if any. */
function linksWithAnchors(markdown: string): Array<{ path: string; anchor: string | undefined }> {
  const prose = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1] ?? '')
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target))
    .map((target) => {
      const [path = '', anchor] = target.split('#');
      return { path: decodeURI(path), anchor };
    });
}

/** Bytes and milliseconds of a quantity written in prose: `30 s`, `1 GiB`, `10`. */
function quantity(number: string, unit: string | undefined): number {
  const factor: Record<string, number> = {
    ms: 1,
    s: 1000,
    min: 60_000,
    h: 3_600_000,
    KiB: 1024,
    MiB: 1024 ** 2,
    GiB: 1024 ** 3,
  };
  return Number(number.replaceAll(',', '')) * (unit === undefined ? 1 : (factor[unit] ?? Number.NaN));
}

describe('defaults quoted in prose', () => {
  test('a default quoted as "`VARIABLE` (N unit by default" is the code\'s', () => {
    const documents = ['README.md', ...markdownUnder(docsDir).map((name) => join('docs', name))];
    const quoted = /`([A-Z][A-Z0-9_]+)`[,(\s]{1,3}([\d.,]+)(?:\s?(ms|s|min|h|KiB|MiB|GiB))? by default/g;
    let checked = 0;
    for (const document of documents) {
      for (const [, name, number, unit] of read(document).matchAll(quoted)) {
        const spec = (CONFIG_VARIABLES as Record<string, { default: string }>)[name as string];
        assert.ok(spec, `${document} quotes a default of ${name}, which is not a variable`);
        checked++;
        assert.equal(
          quantity(number as string, unit),
          Number(spec.default),
          `${document}: ${name}'s default is ${spec.default}, not ${number}${unit === undefined ? '' : ` ${unit}`}`,
        );
      }
    }
    assert.ok(checked >= 5, `only ${checked} quoted defaults found`);
  });
});

describe('README.md and docs/: every relative link is alive', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const documents = ['README.md', ...markdownUnder(docsDir).map((name) => join('docs', name))];

  test('the README is a landing page of fewer than 250 lines, linking the index', () => {
    const readme = read('README.md');
    assert.ok(readme.split('\n').length < 250, `README.md has ${readme.split('\n').length} lines`);
    assert.match(readme, /\]\(docs\/README\.md\)/);
    assert.match(readme, /\]\(bench\/README\.md\)/);
  });

  test('every relative link names a file that exists, and every #anchor a heading of it', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const document of documents) {
      const path = join(root, document);
      for (const { path: target, anchor } of linksWithAnchors(readFileSync(path, 'utf8'))) {
        checked++;
        const file = target === '' ? path : join(dirname(path), target);
        if (!existsSync(file)) {
          broken.push(`${document} -> ${target}`);
          continue;
        }
        if (anchor !== undefined && anchor !== '' && file.endsWith('.md')) {
          if (!anchors(readFileSync(file, 'utf8')).has(anchor))
            broken.push(`${document} -> ${target}#${anchor}`);
        }
      }
    }
    assert.ok(checked > 100, `only ${checked} links found`);
    assert.deepEqual(broken, [], `dead links:\n${broken.join('\n')}`);
  });

  test('the anchor check knows a dead anchor from a live one', () => {
    const doc = '# Title\n\n## Register a model: `POST /models`\n\n```sh\n# not a heading\n```\n## Title\n';
    assert.deepEqual([...anchors(doc)], ['title', 'register-a-model-post-models', 'title-1']);
  });
});
