/**
 * Reporting shared by the benchmarks: the same plain-text and Markdown tables, number formats, host
 * description and result files as bench/registry-api.ts (whose own copies are left as they are).
 *
 * Every benchmark writes `bench/results/<name>-<YYYY-MM-DD>.json` (everything measured and every setting)
 * and `bench/results/<name>-latest.md` (the tables), and prints the tables on stdout; progress goes to
 * stderr.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Goal, goalsObject, goalsSection } from './goals.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export const round = (value: number, digits = 2): number => Math.round(value * 10 ** digits) / 10 ** digits;

export const formatNumber = (value: number, digits = 0): string =>
  value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** A signed difference, e.g. `+0.12` or `-0.03`. */
export const formatDelta = (value: number, digits = 2): string =>
  `${value >= 0 ? '+' : '-'}${formatNumber(Math.abs(value), digits)}`;

/** A figure in ms, `n/a` where there is none. */
export const formatMs = (value: number | null | undefined, digits = 2): string =>
  value === null || value === undefined || Number.isNaN(value) ? 'n/a' : formatNumber(value, digits);

/** `p50/p95/p99` in ms. */
export const formatTriple = (
  d: { p50: number; p95: number; p99: number } | null | undefined,
  digits = 2,
): string =>
  d === null || d === undefined
    ? 'n/a'
    : `${formatMs(d.p50, digits)}/${formatMs(d.p95, digits)}/${formatMs(d.p99, digits)}`;

export function textTable(columns: string[], body: string[][]): string {
  const rows = [columns, ...body];
  const widths = columns.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) =>
    row
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] as number) : cell.padStart(widths[column] as number),
      )
      .join('  ');
  return [line(columns), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(line)].join('\n');
}

export function markdownTable(columns: string[], body: string[][]): string {
  return [
    `| ${columns.join(' | ')} |`,
    `|${columns.map((_, column) => (column === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...body.map((row) => `| ${row.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`),
  ].join('\n');
}

/** A titled table, printed as text and written as Markdown. */
export interface Section {
  title: string;
  columns: string[];
  rows: string[][];
}

export function gitCommit(): string {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  let commit: string;
  try {
    commit = git('rev-parse', '--short=12', 'HEAD');
  } catch {
    return 'none (no commit yet)';
  }
  try {
    return git('status', '--porcelain').length > 0 ? `${commit}+dirty` : commit;
  } catch {
    return commit;
  }
}

export interface Environment {
  node: string;
  platform: string;
  cpus: number;
  cpuModel: string;
  loadAverageAtStart: number[];
  memoryGiB: number;
  gitCommit: string;
}

export function environment(): Environment {
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    loadAverageAtStart: os.loadavg().map((load) => round(load)),
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    gitCommit: gitCommit(),
  };
}

export function environmentText(env: Environment, extra = ''): string {
  return `node ${env.node}, ${env.cpus} CPUs (${env.cpuModel}), load average at start ${env.loadAverageAtStart.join(' ')}${extra}, git ${env.gitCommit}`;
}

export interface ResultFiles {
  json: string;
  markdown: string;
}

/**
 * Prints the sections and the lines under them, and writes `<name>-<date>.json` (the `report` object,
 * after `benchmark`, `startedAt` and `finishedAt`) and
 * `<name>-latest.md`. With `goals`, their table comes first and the JSON gets the `goals` object
 * (goals.ts); with `chart`, the SVG is written to bench/results/<file> and linked from the Markdown.
 */
export async function publishResults(options: {
  name: string;
  title: string;
  startedAt: Date;
  /** The goals table (printed first) and the JSON's `goals` object. */
  goals?: { title: string; goals: readonly Goal[] };
  /** An SVG chart, written to bench/results/<file>. */
  chart?: { file: string; svg: string; caption: string };
  sections: Section[];
  /** The verdict lines, shown in bold in Markdown. */
  verdicts: string[];
  /** `settings: …` and `check: …` lines. */
  notes: { settings: string[]; checks: string[] };
  command: string;
  report: object;
}): Promise<ResultFiles> {
  const { name, title, startedAt, verdicts, notes } = options;
  const sections =
    options.goals === undefined
      ? options.sections
      : [goalsSection(options.goals.title, options.goals.goals), ...options.sections];
  const stamp = { benchmark: name, startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString() };
  const report =
    options.goals === undefined
      ? { ...stamp, ...options.report }
      : { goals: goalsObject(options.goals.goals), ...stamp, ...options.report };
  process.stdout.write(
    [
      '',
      ...sections.flatMap((section) => [`${section.title}:`, textTable(section.columns, section.rows), '']),
      ...verdicts,
      '',
      ...notes.settings.map((line) => `settings: ${line}`),
      ...notes.checks.map((line) => `check: ${line}`),
      '',
    ].join('\n'),
  );
  const date = startedAt.toISOString().slice(0, 10);
  await mkdir(RESULTS_DIR, { recursive: true });
  const json = `${RESULTS_DIR}${name}-${date}.json`;
  const markdown = `${RESULTS_DIR}${name}-latest.md`;
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  if (options.chart !== undefined) await writeFile(`${RESULTS_DIR}${options.chart.file}`, options.chart.svg);
  await writeFile(
    markdown,
    [
      `# ${title} — ${startedAt.toISOString()}`,
      '',
      ...sections.flatMap((section) => [
        `${section.title}:`,
        '',
        markdownTable(section.columns, section.rows),
        '',
      ]),
      ...(options.chart === undefined ? [] : [`![${options.chart.caption}](${options.chart.file})`, '']),
      ...verdicts.map((line) => `**${line}**`).flatMap((line) => [line, '']),
      ...notes.settings.map((line) => `- ${line}`),
      ...notes.checks.map((line) => `- ${line}`),
      '',
      `Command: \`${options.command}\`. Full results: \`bench/results/${name}-${date}.json\`.`,
      '',
    ].join('\n'),
  );
  progress(
    `wrote ${json} and ${markdown}${options.chart === undefined ? '' : ` and ${RESULTS_DIR}${options.chart.file}`}`,
  );
  return { json, markdown };
}

/** `npm run <script> -- <args>` as this process was started. */
export function commandLine(script: string): string {
  return `npm run ${script}${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
}
