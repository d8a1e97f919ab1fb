/**
 * Deletes the rows of `table` matching `where` in chunks of `chunkRows`, each chunk its own statement
 * (and, on a pool, its own short transaction), so pruning a backlog never holds locks or a snapshot for
 * long while consumers write. `where` reads its first parameter as $1; `$2` is the chunk size, so
 * further parameters start at $3. Stops between chunks once `stopped()` says so (having deleted at
 * least one chunk). Returns the rows deleted.
 */
import type pg from 'pg';

export interface ChunkedDelete {
  table: string;
  /** The condition, e.g. `occurred_at < $1`; `$2` is taken by the chunk size. */
  where: string;
  /** $1, then $3, $4, … */
  params: [unknown, ...unknown[]];
  /** Rows per statement. */
  chunkRows: number;
  /** Asked between chunks: true ends the delete early. */
  stopped?: () => boolean;
}

export async function deleteInChunks(pool: pg.Pool, spec: ChunkedDelete): Promise<number> {
  const [first, ...rest] = spec.params;
  let deleted = 0;
  for (;;) {
    if (spec.stopped?.() === true && deleted > 0) return deleted;
    const result = await pool.query(
      `DELETE FROM ${spec.table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${spec.table} WHERE ${spec.where} LIMIT $2))`,
      [first, spec.chunkRows, ...rest],
    );
    deleted += result.rowCount ?? 0;
    if ((result.rowCount ?? 0) < spec.chunkRows) return deleted;
  }
}
