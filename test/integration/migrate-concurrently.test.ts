/**
 * Instances starting together (the API and its workers) migrate one after the other: one applies every
 * migration, the others wait their turn and find nothing pending — none fails with node-pg-migrate's
 * "Another migration is already running".
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, test } from 'node:test';
import { MIGRATIONS_DIR, migrate } from '../../src/db/migrate.ts';
import { createEmptyDatabase } from '../helper.ts';

test('four instances migrating an empty database at once: all succeed, the migrations run once', async () => {
  const databaseUrl = await createEmptyDatabase({ after });
  const results = await Promise.all(Array.from({ length: 4 }, () => migrate(databaseUrl)));
  const all = readdirSync(MIGRATIONS_DIR).filter((name) => name.endsWith('.sql')).length;
  const counts = results.map((applied) => applied.length).sort((a, b) => b - a);
  assert.deepEqual(counts, [all, 0, 0, 0]);
});
