/**
 * Test support for the Prometheus side: a parser for the text exposition format (enough to read our
 * samples back), `promtool check metrics`, the metric names a PromQL expression uses, and the families
 * of docs/reference/metrics.md.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** Family name → type, from the `# TYPE` lines. */
  types: Map<string, string>;
  /** The value of the one sample with this name whose labels include `labels`; undefined if none. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** The sum of the samples with this name whose labels include `labels` (0 when none). */
  sum(name: string, labels?: Record<string, string>): number;
  /** Every sample name (histograms give `_bucket`, `_sum`, `_count`). */
  names(): Set<string>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(value: string): string {
  return value.replace(/\\(["\\n])/g, (_match, char: string) => (char === 'n' ? '\n' : char));
}

/** Parses the Prometheus text format (or OpenMetrics text, whose sample lines are the same). */
export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line === '# EOF') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (type !== null) types.set(type[1] as string, type[2] as string);
      continue;
    }
    const match = SAMPLE.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(LABEL)) {
      labels[label[1] as string] = unescapeLabel(label[2] as string);
    }
    const raw = match[3] as string;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: match[1] as string, labels, value });
  }
  const matching = (name: string, labels: Record<string, string>) =>
    samples.filter(
      (sample) =>
        sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
    );
  return {
    samples,
    types,
    value(name, labels = {}) {
      const found = matching(name, labels);
      assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
      return found[0]?.value;
    },
    sum(name, labels = {}) {
      return matching(name, labels).reduce((total, sample) => total + sample.value, 0);
    },
    names() {
      return new Set(samples.map((sample) => sample.name));
    },
  };
}

/** Fails, with the way to fix it, when promtool is not installed: the check must not be skipped. */
export function requirePromtool(): void {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  assert.ok(
    probe.error === undefined && probe.status === 0,
    'promtool is not installed: apt-get install -y prometheus (Debian), or put promtool on PATH',
  );
}

/** Runs `promtool check metrics` on an exposition; returns its exit status and everything it printed. */
export async function promtoolCheckMetrics(text: string): Promise<{ status: number | null; output: string }> {
  requirePromtool();
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  child.stdin.end(text);
  const status = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  return { status, output };
}

const PROMQL_KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'offset',
  'bool',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects: what is left once strings, label matchers, ranges,
 * grouping clauses, function calls and keywords are taken out. Enough for dashboard queries, which
 * need no exotic syntax.
 */
export function metricNamesIn(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = match[0];
    const rest = stripped.slice((match.index ?? 0) + word.length);
    if (/^\s*\(/.test(rest)) continue; // a function or aggregation
    if (PROMQL_KEYWORDS.has(word.toLowerCase())) continue;
    if (/^\d/.test(word) || /^[eE]\d/.test(word)) continue;
    if (word.startsWith('$')) continue;
    names.add(word);
  }
  return names;
}

export interface DocumentedFamily {
  name: string;
  type: string;
  labels: string[];
  unit: string;
}

/**
 * The families of docs/reference/metrics.md: every table whose header starts `metric | type | labels`,
 * the name and each label as a code span (`—` for none).
 */
export function documentedFamilies(markdown: string): Map<string, DocumentedFamily> {
  const families = new Map<string, DocumentedFamily>();
  let inTable = false;
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) {
      inTable = false;
      continue;
    }
    const cells = line
      .slice(1, line.endsWith('|') ? -1 : undefined)
      .split('|')
      .map((cell) => cell.trim());
    if (/^metric$/i.test(cells[0] ?? '') && /^type$/i.test(cells[1] ?? '')) {
      inTable = true;
      continue;
    }
    if (!inTable || /^:?-+:?$/.test(cells[0] ?? '')) continue;
    const name = /^`([^`]+)`$/.exec(cells[0] ?? '')?.[1];
    assert.ok(name, `metrics.md: the first cell of a row must be a code span: ${line}`);
    assert.ok(!families.has(name), `metrics.md lists ${name} twice`);
    const labels = [...(cells[2] ?? '').matchAll(/`([^`]+)`/g)].map((match) => match[1] as string);
    families.set(name, { name, type: cells[1] ?? '', labels, unit: cells[3] ?? '' });
  }
  return families;
}
