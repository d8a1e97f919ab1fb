/**
 * Several writes of one batch as one statement: each a data-modifying CTE (`WITH name AS (INSERT …)`),
 * then a final SELECT of the checks. PostgreSQL runs the statement in one implicit transaction: all of it commits, or
 * none — a transaction in one round trip, instead of BEGIN, a statement per write, and COMMIT. The writes
 * see the same snapshot and cannot see each other's rows, so they must not touch the same rows.
 *
 * Each write numbers its parameters from $1; they are renumbered here. Its text must hold no other `$`
 * followed by a digit (no dollar-quoting). Writes of a batch are always the same list (an empty array
 * inserts nothing), so a statement's text is the same every batch and is prepared once per connection.
 * Array values are sent as array literals written here (./array-literal.ts): the same text, cheaper.
 */
import { createHash } from 'node:crypto';
import { arrayLiteral } from './array-literal.ts';

/**
 * One write: a data-modifying statement and its values ($1, $2, … in `text`). Or, with `final`, an
 * expression of the final SELECT — a check that fails the statement (a function that raises), which a
 * CTE could not be, since PostgreSQL skips a SELECT in WITH that nothing reads.
 */
export interface BatchWrite {
  /** The CTE's name: other parts of the statement may read its RETURNING rows by it. */
  name: string;
  text: string;
  values: unknown[];
  final?: true;
}

export interface BatchStatement {
  /** The prepared statement's name. */
  name: string;
  text: string;
  values: unknown[];
}

const PARAMETER = /\$(\d+)/g;

/** Shifts a text's $n by `offset`. */
function renumber(text: string, offset: number): string {
  return offset === 0 ? text : text.replace(PARAMETER, (_, n: string) => `$${Number(n) + offset}`);
}

/** PostgreSQL's identifier limit (NAMEDATALEN − 1): it cuts a longer statement name, with a NOTICE. */
const MAX_NAME_BYTES = 63;

/**
 * Statements already composed, by their writes' names: composing is string work a batch need not repeat.
 * Names are ASCII, so their length is their size in bytes.
 */
const composed = new Map<string, { name: string; text: string }>();

/**
 * The prepared statement's name for `key`: the key itself when PostgreSQL keeps it whole, else its head
 * and a hash of all of it. PostgreSQL would cut a long key to 63 bytes, and two statements whose keys
 * share those bytes would then collide on one connection ("prepared statement already exists").
 */
function statementName(key: string): string {
  if (key.length <= MAX_NAME_BYTES) return key;
  const hash = createHash('sha256').update(key).digest('base64url').slice(0, 16);
  return `${key.slice(0, MAX_NAME_BYTES - hash.length - 1)}~${hash}`;
}

/**
 * The statement `WITH <writes> SELECT <finals>`: the final expressions (writes with `final`) may read the
 * other writes' RETURNING rows by their names; without any the statement ends in `SELECT 1`. The prepared
 * statement is named by `prefix` and the writes' names: a name must always stand for the same text.
 */
export function batchStatement(prefix: string, writes: readonly BatchWrite[]): BatchStatement {
  const ctes = writes.filter((write) => write.final !== true);
  const finals = writes.filter((write) => write.final === true);
  const ordered = [...ctes, ...finals];
  const key = `${prefix}:${ordered.map((write) => write.name).join(',')}`;
  const values: unknown[] = [];
  for (const write of ordered) {
    for (const value of write.values) {
      values.push(Array.isArray(value) ? (arrayLiteral(value) ?? value) : value);
    }
  }
  let statement = composed.get(key);
  if (statement === undefined) {
    const parts: string[] = [];
    const expressions: string[] = [];
    let offset = 0;
    for (const write of ordered) {
      const renumbered = renumber(write.text, offset);
      if (write.final === true) expressions.push(renumbered);
      else parts.push(`${write.name} AS (${renumbered})`);
      offset += write.values.length;
    }
    const text = `${parts.length > 0 ? `WITH ${parts.join(',\n')}\n` : ''}SELECT ${expressions.length > 0 ? expressions.join(', ') : '1'}`;
    statement = { name: statementName(key), text };
    composed.set(key, statement);
  }
  return { name: statement.name, text: statement.text, values };
}
