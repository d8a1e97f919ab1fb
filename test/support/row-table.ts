/**
 * Test support: a table of cases, one test per row, for the hostile suite (test/integration/hostile/):
 * each row names what a client does and what must hold, and the runner gives every row its own test,
 * after one that checks the names are unique (a copied row that shadows another is a mistake).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

export interface Row {
  /** The test's name: what the client does, and what must hold. */
  name: string;
}

export interface RowTableOptions {
  /** Rows run at once (true: all), for rows that mostly wait; in order by default. @default false */
  concurrency?: boolean | number;
  /** Each row's time limit, in milliseconds. @default none */
  timeoutMs?: number;
}

/** Registers `title` as a suite with one test per row, running `check(row)`. */
export function rowTable<R extends Row>(
  title: string,
  rows: readonly R[],
  check: (row: R) => Promise<void> | void,
  options: RowTableOptions = {},
): void {
  describe(title, { concurrency: options.concurrency ?? false }, () => {
    test(`the ${rows.length} rows have unique names`, () => {
      assert.equal(new Set(rows.map((row) => row.name)).size, rows.length);
    });
    for (const row of rows) {
      test(row.name, { timeout: options.timeoutMs }, () => check(row));
    }
  });
}
