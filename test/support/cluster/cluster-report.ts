/**
 * Test support: the cluster scenarios' summary — scenario, events, lost, duplicates, time to fail over —
 * printed when the file's tests are done and written to test-results/cluster-failover.{md,json}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ClusterRow {
  scenario: string;
  /** Events sent: answered requests. */
  sent: number;
  lost: number;
  duplicates: number;
  /** From the fault to the bus working on another node again (the slowest of publisher and consumers), in s. */
  failoverSeconds: number;
  /** What else was measured. */
  notes: string;
  passed: boolean;
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export class ClusterReport {
  readonly rows: ClusterRow[] = [];

  add(row: ClusterRow): void {
    this.rows.push(row);
  }

  markdown(): string {
    return [
      '| scenario | events | lost | duplicates | failover (s) | measured | result |',
      '| -------- | -----: | ---: | ---------: | -----------: | -------- | ------ |',
      ...this.rows.map(
        (row) =>
          `| ${row.scenario} | ${row.sent.toLocaleString('en-US')} | ${row.lost} | ${row.duplicates} | ` +
          `${row.failoverSeconds < 0 ? '–' : row.failoverSeconds.toFixed(1)} | ${row.notes} | ${row.passed ? 'pass' : 'FAIL'} |`,
      ),
    ].join('\n');
  }

  write(): void {
    const generated = new Date().toISOString();
    const title = `RabbitMQ cluster failover, ${generated}`;
    console.log(`\n${title}\n\n${this.markdown()}\n`);
    const dir = `${ROOT}test-results`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      `${dir}/cluster-failover.json`,
      `${JSON.stringify({ generated, rows: this.rows }, null, 2)}\n`,
    );
    writeFileSync(`${dir}/cluster-failover.md`, `# ${title}\n\n${this.markdown()}\n`);
  }
}
