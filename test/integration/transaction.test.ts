/**
 * The transaction helper (src/db/transaction.ts) against a real PostgreSQL: what `work` did is committed
 * or rolled back whole, the error is thrown as it was, and a client whose connection broke — or whose
 * ROLLBACK failed — is destroyed instead of going back to the pool.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type pg from 'pg';
import { createPool } from '../../src/db/create-pool.ts';
import { inTransaction, withClient } from '../../src/db/transaction.ts';
import { createEmptyDatabase } from '../helper.ts';

const databaseUrl = await createEmptyDatabase({ after });
const pool = createPool({ databaseUrl, max: 1 });
after(() => pool.end());
await pool.query('CREATE TABLE notes (text text NOT NULL)');

const pid = async (client: pg.ClientBase) =>
  (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number;
const notes = async () => (await pool.query<{ text: string }>('SELECT text FROM notes ORDER BY text')).rows;

test('commits what the work did and returns its value', async () => {
  await pool.query('TRUNCATE notes');
  const value = await inTransaction(pool, async (client) => {
    await client.query("INSERT INTO notes VALUES ('kept')");
    return 42;
  });
  assert.equal(value, 42);
  assert.deepEqual(await notes(), [{ text: 'kept' }]);
});

test('opens the transaction with the statement given, SET LOCAL included, and says when it is sent', async () => {
  let sent = 0;
  const outside = async () =>
    (await pool.query<{ jit: string }>("SELECT current_setting('jit') AS jit")).rows[0]?.jit;
  await pool.query('SET jit = on');
  const seen = await inTransaction(
    pool,
    async (client) => {
      const { rows } = await client.query<{ isolation: string; read_only: string; jit: string }>(
        "SELECT current_setting('transaction_isolation') AS isolation, current_setting('transaction_read_only') AS read_only, current_setting('jit') AS jit",
      );
      return rows[0];
    },
    {
      begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL jit = off',
      onBeginSent: () => sent++,
    },
  );
  assert.deepEqual(seen, { isolation: 'repeatable read', read_only: 'on', jit: 'off' });
  assert.equal(sent, 1);
  assert.equal(await outside(), 'on', 'SET LOCAL ended with the transaction');
});

test('rolls back when the work throws, throws the same error, and keeps the client', async () => {
  await pool.query('TRUNCATE notes');
  const before = await withClient(pool, pid);
  const thrown = new Error('the work failed');
  await assert.rejects(
    inTransaction(pool, async (client) => {
      await client.query("INSERT INTO notes VALUES ('undone')");
      throw thrown;
    }),
    (error) => error === thrown,
  );
  assert.deepEqual(await notes(), []);
  assert.equal(pool.totalCount, 1, 'the client went back to the pool');
  assert.equal(await withClient(pool, pid), before, 'and is the one used next');
});

test('rolls back a statement that failed in PostgreSQL, and keeps the client', async () => {
  await pool.query('TRUNCATE notes');
  const before = await withClient(pool, pid);
  await assert.rejects(
    inTransaction(pool, async (client) => {
      await client.query("INSERT INTO notes VALUES ('undone')");
      await client.query('INSERT INTO notes VALUES (NULL)');
    }),
    { code: '23502' },
  );
  assert.deepEqual(await notes(), []);
  assert.equal(await withClient(pool, pid), before);
});

test('a client whose session was terminated in the work is discarded, not rolled back', async () => {
  const before = await withClient(pool, pid);
  await assert.rejects(
    inTransaction(pool, async (client) => {
      await client.query("INSERT INTO notes VALUES ('lost')");
      await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
    }),
    { code: '57P01' },
  );
  assert.equal(pool.totalCount, 0, 'the pool destroyed the client');
  assert.notEqual(await withClient(pool, pid), before, 'the next client is a new connection');
  assert.deepEqual(
    (await notes()).filter((row) => row.text === 'lost'),
    [],
  );
});

test('a client whose connection was cut under the work is discarded, and the work’s error is thrown', async () => {
  const other = createPool({ databaseUrl, max: 1 });
  after(() => other.end());
  const before = await withClient(pool, pid);
  const thrown = new Error('the work failed after its connection was cut');
  await assert.rejects(
    inTransaction(pool, async (client) => {
      // Cut from another session while no query runs (waiting until the session is gone): the work's
      // own error says nothing about it.
      await other.query('SELECT pg_terminate_backend($1, 5000)', [await pid(client)]);
      throw thrown;
    }),
    (error) => error === thrown,
  );
  assert.equal(pool.totalCount, 0, 'the pool destroyed the client');
  assert.notEqual(await withClient(pool, pid), before);
});

test('a ROLLBACK that fails on a live connection: the client is discarded, not pooled with its transaction open', async () => {
  const before = await withClient(pool, pid);
  const thrown = new Error('the work failed');
  await assert.rejects(
    inTransaction(pool, async (client) => {
      // The connection stays up (pg-pool would discard a dead one by itself): only the ROLLBACK fails.
      const query = client.query.bind(client) as (text: string) => Promise<unknown>;
      (client as unknown as { query: (text: string) => Promise<unknown> }).query = (text) =>
        text === 'ROLLBACK' ? Promise.reject(new Error('ROLLBACK failed')) : query(text);
      await client.query("INSERT INTO notes VALUES ('open')");
      throw thrown;
    }),
    (error) => error === thrown,
  );
  assert.equal(pool.totalCount, 0, 'the pool destroyed the client');
  assert.notEqual(await withClient(pool, pid), before);
  assert.deepEqual(
    (await notes()).filter((row) => row.text === 'open'),
    [],
  );
});

test('withClient keeps the client after an error in a query, discards it when the connection broke', async () => {
  const first = await withClient(pool, pid);
  await assert.rejects(
    withClient(pool, (client) => client.query('SELECT 1/0')),
    { code: '22012' },
  );
  assert.equal(await withClient(pool, pid), first);
  await assert.rejects(
    withClient(pool, (client) => client.query('SELECT pg_terminate_backend(pg_backend_pid())')),
    { code: '57P01' },
  );
  assert.equal(pool.totalCount, 0);
  assert.notEqual(await withClient(pool, pid), first);
});
