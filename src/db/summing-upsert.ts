/**
 * A write that adds many rows of counts into a table in one statement: the rows go as one array
 * parameter per column (`unnest`, in the rows' order, so concurrent writers lock the rows in one order),
 * and a row whose key is already there has its counts added to the stored ones. The analytics tables are
 * all kept this way; describing a table by its columns keeps each statement, its parameters and their
 * order in one list.
 */
import type { BatchWrite } from './batch-statement.ts';

/** A column: its name, its PostgreSQL type, and its value in a row. */
export type Column<Row> = readonly [name: string, type: string, value: (row: Row) => unknown];

export interface SummingTable<Row> {
  /** The write's name in its batch statement. */
  name: string;
  table: string;
  /** The conflict key's columns. */
  key: ReadonlyArray<Column<Row>>;
  /** The count columns, added on a conflict. */
  sums: ReadonlyArray<Column<Row>>;
}

/** The statement text of a {@link SummingTable}; parameters $1… are its columns, key first. */
export function summingUpsertText(spec: Omit<SummingTable<never>, 'name'>): string {
  const columns = [...spec.key, ...spec.sums].map(([name]) => name).join(', ');
  const arrays = [...spec.key, ...spec.sums].map(([, type], index) => `$${index + 1}::${type}[]`).join(', ');
  const keys = spec.key.map(([name]) => name).join(', ');
  const sums = spec.sums.map(([name]) => `${name} = t.${name} + EXCLUDED.${name}`).join(', ');
  return `INSERT INTO ${spec.table} AS t (${columns})
          SELECT ${columns}
          FROM unnest(${arrays}) WITH ORDINALITY AS r(${columns}, n)
          ORDER BY n
          ON CONFLICT (${keys}) DO UPDATE SET ${sums}`;
}

export function summingUpsert<Row>(spec: SummingTable<Row>, rows: readonly Row[]): BatchWrite {
  return {
    name: spec.name,
    text: summingUpsertText(spec),
    values: [...spec.key, ...spec.sums].map(([, , value]) => rows.map(value)),
  };
}
