/**
 * A pool client terminated by the server while checked out and between queries — what every session
 * sees when PostgreSQL shuts down — is reported to the pool's error handler, not thrown: before, it was
 * an unhandled 'error' event that crashed a worker mid-transaction (fault matrix, scenario 7).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createPool } from '../../src/db/create-pool.ts';
import { createEmptyDatabase } from '../helper.ts';
import { waitUntil } from '../support/wait-until.ts';

test('a checked-out client terminated between queries is reported, and its next query fails', async () => {
  const databaseUrl = await createEmptyDatabase({ after });
  const reported: Error[] = [];
  const pool = createPool({ databaseUrl, max: 2 }, (error) => reported.push(error));
  after(() => pool.end());
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  after(() => process.off('uncaughtException', onUncaught));

  const client = await pool.connect();
  await client.query('BEGIN');
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  // From another session, as a shutdown would: the server sends FATAL 57P01 while no query runs.
  await pool.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
  await waitUntil('the error to be reported', () => reported.length > 0, 5000);

  assert.match(String(reported[0]?.message), /terminating connection due to administrator command/);
  await assert.rejects(client.query('SELECT 1'), 'the dead client refuses the next query');
  client.release(true);
  assert.deepEqual(uncaught, [], 'nothing thrown out of the event loop');
  assert.equal((await pool.query('SELECT 1 AS one')).rows[0]?.one, 1, 'the pool goes on with a new client');
});
