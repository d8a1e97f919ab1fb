/**
 * Reporting shared by the benchmarks: tables (declared as columns, printed as text, written as Markdown),
 * number formats, the host description and the result files: `bench/results/<name>-<YYYY-MM-DD>.json`
 * (everything measured and every setting) and `bench/results/<name>-latest.md` (the tables). Tables go to
 * stdout, progress to stderr.
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
export const formatTriple = (d: { p50: number; p95: number; p99: number } | null | undefined, digits = 2) =>
  d == null ? 'n/a' : [d.p50, d.p95, d.p99].map((value) => formatMs(value, digits)).join('/');

/** A titled table, printed as text and written as Markdown. */
export interface Section {
  title: string;
  columns: string[];
  rows: string[][];
}

/** A table declared by its columns: each header with the function giving a row's cell. */
export type Columns<R> = Record<string, (row: R) => string>;

/** The Section of `rows` under `columns`, in the columns' order. */
export function table<R>(title: string, rows: readonly R[], columns: Columns<R>): Section {
  const cells = Object.values(columns);
  return { title, columns: Object.keys(columns), rows: rows.map((row) => cells.map((cell) => cell(row))) };
}

function textTable({ columns, rows }: Section): string {
  const widths = columns.map((_, i) => Math.max(...[columns, ...rows].map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) =>
    row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [line(columns), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

function markdownTable({ columns, rows }: Section): string {
  const line = (row: string[]) => `| ${row.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
  return [
    line(columns),
    `|${columns.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

function gitCommit(): string {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  try {
    const commit = git('rev-parse', '--short=12', 'HEAD');
    return git('status', '--porcelain').length > 0 ? `${commit}+dirty` : commit;
  } catch {
    return 'unknown';
  }
}

export function environment() {
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

export function environmentText(env: ReturnType<typeof environment>, extra = ''): string {
  return `node ${env.node}, ${env.cpus} CPUs (${env.cpuModel}), load average at start ${env.loadAverageAtStart.join(' ')}${extra}, git ${env.gitCommit}`;
}

/**
 * Prints the sections and the lines under them, and writes `<name>-<date>.json` (the `report` object,
 * after the `goals` object, `benchmark`, `startedAt` and `finishedAt`) and `<name>-latest.md`. The goals
 * table comes first; a chart is written to bench/results/<file> and linked from the Markdown.
 */
export async function publishResults(options: {
  name: string;
  title: string;
  startedAt: Date;
  goals?: { title: string; goals: readonly Goal[] };
  chart?: { file: string; svg: string; caption: string };
  sections: Section[];
  /** Lines shown in bold in Markdown. */
  verdicts?: string[];
  /** `settings: …` and `check: …` lines. */
  notes: { settings: string[]; checks: string[] };
  command: string;
  report: object;
}): Promise<void> {
  const { name, title, startedAt, goals, chart, verdicts = [], notes } = options;
  const sections =
    goals === undefined ? options.sections : [goalsSection(goals.title, goals.goals), ...options.sections];
  const report = {
    ...(goals === undefined ? {} : { goals: goalsObject(goals.goals) }),
    benchmark: name,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    ...options.report,
  };
  const tables = (format: (section: Section) => string, gap: string[]) =>
    sections.flatMap((section) => [`${section.title}:`, ...gap, format(section), '']);
  process.stdout.write(
    [
      '',
      ...tables(textTable, []),
      ...verdicts,
      '',
      ...notes.settings.map((line) => `settings: ${line}`),
      ...notes.checks.map((line) => `check: ${line}`),
      '',
    ].join('\n'),
  );
  const date = startedAt.toISOString().slice(0, 10);
  const json = `${RESULTS_DIR}${name}-${date}.json`;
  const markdown = `${RESULTS_DIR}${name}-latest.md`;
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  if (chart !== undefined) await writeFile(`${RESULTS_DIR}${chart.file}`, chart.svg);
  await writeFile(
    markdown,
    [
      `# ${title} — ${startedAt.toISOString()}`,
      '',
      ...tables(markdownTable, ['']),
      ...(chart === undefined ? [] : [`![${chart.caption}](${chart.file})`, '']),
      ...verdicts.flatMap((line) => [`**${line}**`, '']),
      ...[...notes.settings, ...notes.checks].map((line) => `- ${line}`),
      '',
      `Command: \`${options.command}\`. Full results: \`bench/results/${name}-${date}.json\`.`,
      '',
    ].join('\n'),
  );
  progress(`wrote ${json} and ${markdown}${chart === undefined ? '' : ` and ${RESULTS_DIR}${chart.file}`}`);
}

/** `npm run <script> -- <args>` as this process was started. */
export function commandLine(script: string): string {
  return `npm run ${script}${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
}
