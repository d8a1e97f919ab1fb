/**
 * Test support: the fault matrix's summary — one row per scenario — printed as a table when the file's
 * tests are done, and written as JSON and markdown to test-results/ (a full run also to
 * bench/results/fault-matrix-full.md, which the README quotes).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type MatrixMode = 'reduced' | 'full';

export interface MatrixRow {
  /** Its number in the list (1–10). */
  number: number;
  scenario: string;
  /** Events sent: answered requests, or distinct events published. */
  sent: number;
  lost: number;
  duplicates: number;
  /** From the fault's end until every event was applied by every consumer, in s. */
  recoverySeconds: number;
  /** What else the scenario measured (detection time, memory, dropped by design, …). */
  notes: string;
  passed: boolean;
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export class MatrixReport {
  readonly rows: MatrixRow[] = [];

  constructor(readonly mode: MatrixMode) {}

  add(row: MatrixRow): void {
    this.rows.push(row);
  }

  markdown(): string {
    const header = [
      '| # | scenario | events sent | lost | duplicates applied | recovery (s) | measured | result |',
      '| -: | -------- | ----------: | ---: | -----------------: | -----------: | -------- | ------ |',
    ];
    const lines = this.rows.map(
      (row) =>
        `| ${row.number} | ${row.scenario} | ${row.sent.toLocaleString('en-US')} | ${row.lost} | ` +
        `${row.duplicates} | ${row.recoverySeconds.toFixed(1)} | ${row.notes} | ${row.passed ? 'pass' : 'FAIL'} |`,
    );
    return [...header, ...lines].join('\n');
  }

  /** Prints the table and writes the files; the rows are whatever scenarios ran (a filter may skip some). */
  write(): void {
    const generated = new Date().toISOString();
    const title = `Fault matrix (${this.mode}), ${generated}, ${process.env.HOSTNAME ?? 'this machine'}`;
    console.log(`\n${title}\n\n${this.markdown()}\n`);
    const json = JSON.stringify({ mode: this.mode, generated, rows: this.rows }, null, 2);
    const dir = `${ROOT}test-results`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/fault-matrix-${this.mode}.json`, `${json}\n`);
    writeFileSync(`${dir}/fault-matrix-${this.mode}.md`, `# ${title}\n\n${this.markdown()}\n`);
    if (this.mode === 'full' && this.rows.length === 10) {
      writeFileSync(
        `${ROOT}bench/results/fault-matrix-full.md`,
        `# ${title}\n\nMeasured by \`npm run test:faults:full\` (test/faults/fault-matrix.test.ts).\n\n${this.markdown()}\n`,
      );
    }
  }
}
