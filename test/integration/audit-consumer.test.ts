/**
 * The audit consumer on the real broker and database: every event of `audit.trail` appended once with its
 * envelope, one hash chain per model (and one for events without a model) in the order the events were
 * published, the table refusing changes, and `audit verify` finding the first broken link after rows are
 * edited or deleted behind the trigger's back (as a superuser could).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import { auditVerify } from '../../src/cli/audit.ts';
import { CliError } from '../../src/cli/cli-error.ts';
import { appendAuditRecords, auditConsumer } from '../../src/consumers/audit/audit-consumer.ts';
import {
  canonicalEventTimestamp,
  GENESIS_HASH,
  GLOBAL_CHAIN_KEY,
  recordHash,
} from '../../src/consumers/audit/audit-hash.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import type { Delivery } from '../../src/consumers/consumer.ts';
import { createTestDatabase } from '../helper.ts';
import { consumerHarness } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';

const harness = await consumerHarness({ after }, () => [auditConsumer()]);
const { pool } = harness;

function updated(modelId: string, sequence: number): TelemetryEvent {
  const base = exampleEvent('model.updated');
  return exampleEvent('model.updated', {
    event_id: randomUUID(),
    correlation_id: `req-${randomUUID()}`,
    sequence,
    data: { ...base.data, model_id: modelId, version: sequence, cost_in_per_mil: sequence },
  });
}

function filtered(): TelemetryEvent {
  return exampleEvent('filter.executed', { event_id: randomUUID(), correlation_id: `req-${randomUUID()}` });
}

function failed(modelId: string | null, field: string | null = 'model_id'): TelemetryEvent {
  return exampleEvent('api.error', {
    event_id: randomUUID(),
    correlation_id: `req-${randomUUID()}`,
    data: { model_id: modelId, field },
  });
}

async function count(where = 'TRUE', values: unknown[] = []): Promise<number> {
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM audit_records WHERE ${where}`, values);
  return rows[0].n;
}

async function waitForRecords(where: string, values: unknown[], expected: number): Promise<void> {
  await harness.waitUntil(
    `${expected} audit records (${where})`,
    async () => (await count(where, values)) >= expected,
  );
}

interface ChainRow {
  id: number;
  chain_position: number;
  event_id: string;
  sequence: number | null;
  prev_hash: Buffer;
  hash: Buffer;
}

async function chain(chainKey: string): Promise<ChainRow[]> {
  const { rows } = await pool.query(
    `SELECT id::int, chain_position::int, event_id, sequence::int, prev_hash, hash
       FROM audit_records WHERE chain_key = $1 ORDER BY chain_position`,
    [chainKey],
  );
  return rows;
}

/** Runs `sql` with the append-only trigger off, as a superuser tampering with the table would. */
async function tamper(sql: string, values: unknown[] = []): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only');
    await client.query(sql, values);
    await client.query('ALTER TABLE audit_records ENABLE TRIGGER audit_records_append_only');
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/** A whole row, to put back after a tampering test. */
async function snapshotRow(id: number): Promise<Record<string, unknown>> {
  const { rows } = await pool.query(
    `SELECT id, event_id, event_type, model_id, chain_key, chain_position, correlation_id, user_id, sequence,
            occurred_at, recorded_at, envelope, prev_hash, hash FROM audit_records WHERE id = $1`,
    [id],
  );
  assert.ok(rows[0], `record ${id} exists`);
  return rows[0];
}

async function restoreRow(row: Record<string, unknown>): Promise<void> {
  const columns = Object.keys(row);
  await tamper(`DELETE FROM audit_records WHERE id = $1`, [row.id]);
  await pool.query(
    `INSERT INTO audit_records (${columns.join(', ')}) VALUES (${columns.map((_, index) => `$${index + 1}`).join(', ')})`,
    columns.map((column) => (column === 'envelope' ? JSON.stringify(row[column]) : row[column])),
  );
}

function deliveryOf(event: TelemetryEvent): Delivery {
  return {
    event,
    id: event.event_id,
    content: Buffer.from(JSON.stringify(event)),
    exchange: EXCHANGES.models,
    routingKey: event.event_type,
    redelivered: false,
    properties: {
      messageId: event.event_id,
      correlationId: event.correlation_id,
      type: event.event_type,
      timestamp: undefined,
      headers: {},
    },
  };
}

/** Appends directly, in a transaction of its own, as the runtime would. */
async function appendDirectly(events: TelemetryEvent[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await appendAuditRecords(events.map(deliveryOf), client);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

describe('appending', () => {
  test('several models interleaved: one chain each in sequence order, one for the rest, envelopes kept', async () => {
    const models = ['a/one', 'b/two', 'c/three', 'd/four', 'e/five'];
    const events: TelemetryEvent[] = [];
    for (let sequence = 1; sequence <= 40; sequence++) {
      for (const model of models) events.push(updated(model, sequence));
      if (sequence % 4 === 0) events.push(filtered(), failed(null, 'limit'), failed('a/one'));
    }
    await harness.publish(events);
    await waitForRecords('TRUE', [], events.length);

    for (const model of models) {
      const rows = await chain(model);
      const expected = models[0] === model ? 40 + 10 : 40;
      assert.equal(rows.length, expected, `${model}: every event recorded once`);
      assert.deepEqual(
        rows.map((row) => row.chain_position),
        rows.map((_, index) => index + 1),
      );
      const sequences = rows.flatMap((row) => (row.sequence === null ? [] : [row.sequence]));
      assert.deepEqual(
        sequences,
        Array.from({ length: 40 }, (_, index) => index + 1),
        `${model} in order`,
      );
      // Each link: prev_hash is the previous record's hash, from the all-zero hash.
      rows.reduce((previous, row) => {
        assert.deepEqual(row.prev_hash, previous, `${model} position ${row.chain_position} links back`);
        return row.hash;
      }, GENESIS_HASH);
    }
    const global = await chain(GLOBAL_CHAIN_KEY);
    assert.equal(global.length, 20, 'filters and errors without a model share one chain');

    // The stored fields and envelope are the event's, and the hash is over them.
    const sample = events[7] as TelemetryEvent;
    const { rows } = await pool.query(
      `SELECT chain_position::int, event_type, model_id, correlation_id, user_id, sequence::int,
              to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
              to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS recorded_at,
              envelope, prev_hash, hash
         FROM audit_records WHERE event_id = $1`,
      [sample.event_id],
    );
    const row = rows[0];
    assert.deepEqual(row.envelope, sample);
    assert.equal(row.event_type, sample.event_type);
    assert.equal(row.model_id, (sample.data as { model_id: string }).model_id);
    assert.equal(row.correlation_id, sample.correlation_id);
    assert.equal(row.user_id, sample.user_id);
    assert.equal(row.occurred_at, canonicalEventTimestamp(sample.timestamp));
    assert.deepEqual(recordHash(row.prev_hash, { ...row, event_id: sample.event_id }), row.hash);

    const verification = await verifyAuditTrail(pool, { batchSize: 7 });
    assert.deepEqual(verification, {
      ok: true,
      records: events.length,
      chains: models.length + 1,
      broken: undefined,
    });
  });

  test('a model published in order is recorded in strictly increasing sequence, without gaps', async () => {
    const events = Array.from({ length: 300 }, (_, index) => updated('ordered/model', index + 1));
    await harness.publish(events);
    await waitForRecords('model_id = $1', ['ordered/model'], 300);
    const rows = await chain('ordered/model');
    assert.deepEqual(
      rows.map((row) => row.sequence),
      rows.map((_, index) => index + 1),
    );
    assert.deepEqual(
      rows.map((row) => row.event_id),
      events.map((event) => event.event_id),
    );
  });

  test('duplicates are applied once: redelivered, replayed, twice in a batch, or already recorded', async () => {
    const events = [updated('dup/model', 1), updated('dup/model', 2), filtered()];
    const ids = events.map((event) => event.event_id);
    const before = harness.runtime.status()[0]?.counters.duplicates ?? 0;
    await harness.publish(events);
    await harness.publish(events);
    await waitForRecords('event_id = ANY($1)', [ids], 3);
    await harness.waitUntil(
      'duplicates seen',
      () => (harness.runtime.status()[0]?.counters.duplicates ?? 0) >= before + 3,
    );
    assert.equal(await count('event_id = ANY($1)', [ids]), 3);

    // The consumer de-duplicates in audit_records itself: nothing in the runtime's table, and the view of
    // applied events shows each event once, at its recording time.
    const runtimeRows = await pool.query(
      'SELECT count(*)::int AS n FROM consumer_applied_events WHERE event_id = ANY($1)',
      [ids],
    );
    assert.equal(runtimeRows.rows[0].n, 0);
    const applied = await pool.query(
      `SELECT v.consumer, v.applied_at = r.recorded_at AS same FROM applied_events v
         JOIN audit_records r USING (event_id) WHERE v.event_id = ANY($1)`,
      [ids],
    );
    assert.deepEqual(
      applied.rows,
      ids.map(() => ({ consumer: 'audit', same: true })),
    );

    // A batch of recorded events, a second copy of one, and a new one: only the new one is appended, at
    // the next position of its chain.
    const next = updated('dup/model', 3);
    let appended: Delivery[] = [];
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      appended = await appendAuditRecords(
        [...events, next, events[0] as TelemetryEvent, next].map(deliveryOf),
        client,
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.deepEqual(
      appended.map((delivery) => delivery.id),
      [next.event_id],
    );
    assert.equal(await count('event_id = ANY($1)', [[...ids, next.event_id]]), 4);
    assert.deepEqual(
      (await chain('dup/model')).map((row) => [row.chain_position, row.sequence]),
      [
        [1, 1],
        [2, 2],
        [3, 3],
      ],
    );
    assert.equal((await verifyAuditTrail(pool)).ok, true);
  });

  test('self-test events: recorded as applied by the runtime and counted, with no audit record', async () => {
    const probe = exampleEvent('model.queried', {
      event_id: randomUUID(),
      correlation_id: `selftest-${randomUUID()}`,
      source: 'selftest',
    });
    await harness.publish([probe, probe]);
    await harness.waitUntil('self-test event applied', async () => {
      const { rows } = await pool.query(
        "SELECT count(*)::int AS n FROM consumer_applied_events WHERE consumer = 'audit' AND event_id = $1",
        [probe.event_id],
      );
      return rows[0].n === 1;
    });
    assert.equal(await count('event_id = $1', [probe.event_id]), 0);
    const { rows } = await pool.query('SELECT consumer FROM applied_events WHERE event_id = $1', [
      probe.event_id,
    ]);
    assert.deepEqual(rows, [{ consumer: 'audit' }]);
  });

  test('concurrent appenders of the same chains never fork them nor deadlock', async () => {
    const keys = ['race/a', 'race/b', 'race/c'];
    const batches = Array.from({ length: 8 }, (_, batch) =>
      // Each batch touches the chains in a different order.
      Array.from({ length: 30 }, (_, index) =>
        updated(keys[(index + batch) % keys.length] as string, index + 1),
      ),
    );
    await Promise.all(batches.map((batch) => appendDirectly(batch)));
    for (const key of keys) {
      const rows = await chain(key);
      assert.equal(rows.length, 80);
      assert.deepEqual(
        rows.map((row) => row.chain_position),
        rows.map((_, index) => index + 1),
      );
    }
    assert.equal((await verifyAuditTrail(pool)).ok, true);
  });

  test('two appenders of the same events at once: one records them, the other fails and finds them recorded after', async () => {
    const events = [updated('race/same', 1), filtered(), updated('race/same', 2)];
    const results = await Promise.allSettled([appendDirectly(events), appendDirectly(events)]);
    // The second waited for the first's heads; its probe predates that commit, so the unique event_id stops
    // it (the runtime then applies its deliveries one transaction each), or it saw the records already.
    for (const result of results) {
      if (result.status === 'rejected') assert.equal((result.reason as { code?: string }).code, '23505');
    }
    assert.ok(results.some((result) => result.status === 'fulfilled'));
    await appendDirectly(events);
    assert.equal(await count('event_id = ANY($1)', [events.map((event) => event.event_id)]), 3);
    assert.deepEqual(
      (await chain('race/same')).map((row) => row.chain_position),
      [1, 2],
    );
    assert.equal((await verifyAuditTrail(pool)).ok, true);
  });

  test('characters PostgreSQL cannot store (U+0000, lone surrogates) become U+FFFD; the record is kept', async () => {
    const event = failed(null, 'x\u0000y\ud800');
    await harness.publish([event]);
    await waitForRecords('event_id = $1', [event.event_id], 1);
    const { rows } = await pool.query(
      "SELECT envelope #>> '{data,field}' AS field FROM audit_records WHERE event_id = $1",
      [event.event_id],
    );
    assert.equal(rows[0].field, 'x\ufffdy\ufffd');
    assert.equal((await verifyAuditTrail(pool)).ok, true);
  });
});

describe('append-only', () => {
  test('UPDATE, DELETE and TRUNCATE are refused, even for a superuser', async () => {
    assert.ok((await count()) > 0);
    for (const sql of [
      "UPDATE audit_records SET correlation_id = 'forged'",
      'DELETE FROM audit_records',
      'TRUNCATE audit_records',
    ]) {
      await assert.rejects(pool.query(sql), /audit_records is append-only/, sql);
    }
  });
});

describe('audit verify finds tampering', () => {
  /** A record in the middle of a model's chain, with its neighbours. */
  async function middleOf(model: string) {
    const rows = await chain(model);
    assert.ok(rows.length >= 3);
    const index = Math.floor(rows.length / 2);
    return {
      record: rows[index] as ChainRow,
      next: rows[index + 1] as ChainRow,
      last: rows.at(-1) as ChainRow,
    };
  }

  test('the trail verifies before any tampering', async () => {
    const result = await verifyAuditTrail(pool);
    assert.equal(result.ok, true, JSON.stringify(result.broken));
  });

  test('an edited envelope: exactly that record is the first broken link', async (t) => {
    const { record } = await middleOf('b/two');
    const original = await snapshotRow(record.id);
    t.after(() => restoreRow(original));
    await tamper(
      `UPDATE audit_records SET envelope = jsonb_set(envelope, '{data,cost_in_per_mil}', '0') WHERE id = $1`,
      [record.id],
    );
    const result = await verifyAuditTrail(pool, { batchSize: 50 });
    assert.equal(result.ok, false);
    assert.equal(result.broken?.kind, 'hash');
    assert.equal(result.broken?.recordId, record.id);
    assert.equal(result.broken?.modelId, 'b/two');
    assert.equal(result.broken?.position, record.chain_position);
    assert.match(result.broken?.detail ?? '', /changed after it was written/);
  });

  test('an edited column is named when it disagrees with the envelope', async (t) => {
    const { record } = await middleOf('c/three');
    const original = await snapshotRow(record.id);
    t.after(() => restoreRow(original));
    await tamper(`UPDATE audit_records SET correlation_id = 'req-forged' WHERE id = $1`, [record.id]);
    const result = await verifyAuditTrail(pool);
    assert.equal(result.broken?.recordId, record.id);
    assert.match(result.broken?.detail ?? '', /correlation_id is "req-forged" but the envelope says "req-/);
  });

  test('an edit with a recomputed hash breaks the next link', async (t) => {
    const { record, next } = await middleOf('d/four');
    const original = await snapshotRow(record.id);
    t.after(() => restoreRow(original));
    const { rows } = await pool.query(
      `SELECT chain_position::int, event_id, event_type, model_id, correlation_id, user_id, sequence::int,
              to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
              to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS recorded_at,
              envelope, prev_hash FROM audit_records WHERE id = $1`,
      [record.id],
    );
    const forged = { ...rows[0], user_id: null, envelope: { ...rows[0].envelope, user_id: null } };
    await tamper(`UPDATE audit_records SET user_id = NULL, envelope = $2::jsonb, hash = $3 WHERE id = $1`, [
      record.id,
      JSON.stringify(forged.envelope),
      recordHash(forged.prev_hash, forged),
    ]);
    const result = await verifyAuditTrail(pool);
    assert.equal(result.broken?.kind, 'prev_hash');
    assert.equal(result.broken?.recordId, next.id);
    assert.equal(result.broken?.position, record.chain_position + 1);
  });

  test('a deleted record: the record after the gap is reported, with the missing position', async (t) => {
    const { record, next } = await middleOf('e/five');
    const original = await snapshotRow(record.id);
    t.after(() => restoreRow(original));
    await tamper('DELETE FROM audit_records WHERE id = $1', [record.id]);
    const result = await verifyAuditTrail(pool);
    assert.equal(result.broken?.kind, 'missing');
    assert.equal(result.broken?.recordId, next.id);
    assert.equal(result.broken?.modelId, 'e/five');
    assert.match(result.broken?.detail ?? '', new RegExp(`position ${record.chain_position} missing`));
  });

  test("a chain's last record deleted: its head still names it", async (t) => {
    const { last } = await middleOf('a/one');
    const original = await snapshotRow(last.id);
    t.after(() => restoreRow(original));
    await tamper('DELETE FROM audit_records WHERE id = $1', [last.id]);
    const result = await verifyAuditTrail(pool);
    assert.equal(result.broken?.kind, 'head');
    assert.equal(result.broken?.recordId, last.id);
    assert.equal(result.broken?.position, last.chain_position);
  });

  test('the first record of the records-without-a-model chain deleted', async (t) => {
    const [first, second] = await chain(GLOBAL_CHAIN_KEY);
    assert.ok(first && second);
    const original = await snapshotRow(first.id);
    t.after(() => restoreRow(original));
    await tamper('DELETE FROM audit_records WHERE id = $1', [first.id]);
    const result = await verifyAuditTrail(pool);
    assert.equal(result.broken?.kind, 'missing');
    assert.equal(result.broken?.recordId, second.id);
    assert.equal(result.broken?.modelId, null);
  });

  test('telemetry-bus audit verify: "ok: N records in M chains", or the broken link and exit code 1', async (t) => {
    const output: string[] = [];
    const out = { write: (text: string) => output.push(text) > 0 };
    await auditVerify({ databaseUrl: harness.databaseUrl }, {}, out, out);
    const records = await count();
    const { rows } = await pool.query('SELECT count(DISTINCT chain_key)::int AS n FROM audit_records');
    assert.deepEqual(output, [`ok: ${records} records in ${rows[0].n} chains\n`]);

    const { record } = await middleOf('b/two');
    const original = await snapshotRow(record.id);
    t.after(() => restoreRow(original));
    await tamper(
      `UPDATE audit_records SET occurred_at = occurred_at + interval '1 microsecond' WHERE id = $1`,
      [record.id],
    );
    const error = await auditVerify({ databaseUrl: harness.databaseUrl }, {}, out, out).then(
      () => assert.fail('verify must fail'),
      (failure: unknown) => failure,
    );
    assert.ok(error instanceof CliError);
    assert.equal(error.exitCode, 1);
    assert.match(
      error.message,
      new RegExp(`^audit trail broken at record ${record.id} \\(model b/two, position \\d+\\): hash: `),
    );
  });
});

describe('pruning by hand, as the migration documents it', () => {
  test('the remaining records still verify, appending continues, and a later deletion is still found', async () => {
    // A database of its own: this one is pruned.
    const prunedPool = new pg.Pool({ connectionString: await createTestDatabase({ after }), max: 2 });
    prunedPool.on('error', () => {});
    after(() => prunedPool.end());
    const append = async (events: TelemetryEvent[]) => {
      const client = await prunedPool.connect();
      try {
        await client.query('BEGIN');
        await appendAuditRecords(events.map(deliveryOf), client);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    const dated = (event: TelemetryEvent, timestamp: string) => ({ ...event, timestamp }) as TelemetryEvent;
    const old = '2024-12-31T23:00:00.000Z';
    const recent = '2025-01-01T01:00:00.000Z';
    await append([
      dated(updated('prune/kept', 1), old),
      dated(updated('prune/gone', 1), old),
      dated(filtered(), old),
      dated(updated('prune/kept', 2), old),
      dated(updated('prune/kept', 3), recent),
      dated(filtered(), recent),
    ]);

    const migration = readFileSync(
      new URL('../../migrations/1764345600001_audit-trail.sql', import.meta.url),
      'utf8',
    );
    const procedure = migration
      .split('\n')
      .filter((line) => line.startsWith('--   '))
      .map((line) => line.slice('--   '.length))
      .join('\n');
    assert.match(
      procedure,
      /^BEGIN;[\s\S]*DELETE FROM audit_records WHERE occurred_at < '2025-01-01T00:00:00Z';[\s\S]*COMMIT;$/,
    );
    await prunedPool.query(procedure);

    assert.deepEqual(await verifyAuditTrail(prunedPool), {
      ok: true,
      records: 2,
      chains: 2,
      broken: undefined,
    });
    await append([updated('prune/kept', 4), updated('prune/gone', 2), filtered()]);
    assert.deepEqual(await verifyAuditTrail(prunedPool), {
      ok: true,
      records: 5,
      chains: 3,
      broken: undefined,
    });

    const { rows } = await prunedPool.query(
      "SELECT id::int FROM audit_records WHERE model_id = 'prune/kept' ORDER BY chain_position",
    );
    await prunedPool.query(
      `BEGIN;
       ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only;
       DELETE FROM audit_records WHERE id = ${Number(rows[0].id)};
       ALTER TABLE audit_records ENABLE TRIGGER audit_records_append_only;
       COMMIT;`,
    );
    const result = await verifyAuditTrail(prunedPool);
    assert.equal(result.broken?.kind, 'missing');
    assert.equal(result.broken?.recordId, rows[1].id);
    assert.match(result.broken?.detail ?? '', /position 3 missing/);
  });
});

test('restored rows verify again: the tampering tests left the trail as it was', async () => {
  assert.equal((await verifyAuditTrail(pool)).ok, true);
  assert.equal(QUEUES.audit, auditConsumer().queue);
});
