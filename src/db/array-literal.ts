/**
 * A statement's array parameter as the PostgreSQL array literal node-postgres would send for it, written
 * faster: a batch statement carries an array per column (`unnest($1::uuid[], $2::text[], …)`), so a
 * batch of 250 events has thousands of elements, and node-postgres quotes each through two regex
 * replaces and a type dispatch (its `arrayString`), a visible part of a consumer's node CPU per event.
 *
 * Only flat arrays of strings, finite or not numbers, booleans and null/undefined are written here, each
 * element exactly as node-postgres writes it (quoted, `\` and `"` escaped; null and undefined as NULL),
 * so the text PostgreSQL receives is the same. Anything else (Buffers, Dates, nested arrays, objects) is
 * left to node-postgres: undefined.
 */

/** The characters an element's quoting must escape: the common string has neither. */
const NEEDS_ESCAPING = /["\\]/;

export function arrayLiteral(values: readonly unknown[]): string | undefined {
  let text = '{';
  for (let index = 0; index < values.length; index++) {
    const value = values[index];
    if (index > 0) text += ',';
    if (value === null || value === undefined) text += 'NULL';
    else if (typeof value === 'string')
      text += NEEDS_ESCAPING.test(value)
        ? `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
        : `"${value}"`;
    else if (typeof value === 'number' || typeof value === 'boolean') text += `"${value}"`;
    else return undefined;
  }
  return `${text}}`;
}
