/**
 * Hostile (issue 17, item 2, second half): keyless traffic wrote to the permanent audit trail without
 * limit. What the trail keeps now (docs/reference/security.md, "What the audit trail keeps"): a keyless
 * flood beyond the rate limit leaves no record at all; the keyless client errors that pass are records of
 * the chain '~keyless' for AUDIT_KEYLESS_RETENTION_DAYS, then counts per day, status and code — pruned by
 * whole prefixes, the pruned head recorded, `audit verify` still passing, and every request counted
 * exactly once however often its event is redelivered or replayed.
 *
 * One API (keyless limit: 5 a minute per address) and one audit consumer whose clock a row can move
 * forward (`daysAhead`), as the pruning is: the rows run in order, each from its own client address.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import amqp from 'amqplib';
import pino from 'pino';
import { closeConnection } from '../../../src/bus/broker-connection.ts';
import type { TelemetryEvent } from '../../../src/bus/event-schemas.ts';
import { EXCHANGES } from '../../../src/bus/topology.ts';
import { auditConsumer } from '../../../src/consumers/audit/audit-consumer.ts';
import { verifyAuditTrail } from '../../../src/consumers/audit/audit-verify.ts';
import { KEYLESS_CHAIN_KEY } from '../../../src/consumers/audit/keyless-errors.ts';
import { KeylessPruner } from '../../../src/consumers/audit/keyless-pruner.ts';
import { ConsumerRuntime } from '../../../src/consumers/consumer-runtime.ts';
import { topologyFromConfig } from '../../../src/topology-from-config.ts';
import { build } from '../../helper.ts';
import { type Row, rowTable } from '../../support/row-table.ts';
import { waitUntil } from '../../support/wait-until.ts';

const LIMIT = 5;
const RETENTION_DAYS = 30;
const DAY_MS = 86_400_000;
const { app, keys, services, config } = await build(
  { after },
  { RATE_LIMIT_KEYLESS_PER_MINUTE: String(LIMIT) },
);
const pool = services.pool;

/** How far ahead of the real clock the audit consumer's clock runs, in days. */
let daysAhead = 0;
const runtime = new ConsumerRuntime({
  urls: config.rabbitmqUrls,
  pool,
  topology: topologyFromConfig(config),
  consumers: [
    auditConsumer({
      keylessRetentionDays: RETENTION_DAYS,
      now: () => Date.now() + daysAhead * DAY_MS,
    }),
  ],
  retryDelaysMs: config.retryDelaysMs,
  logger: pino({ level: 'silent' }),
});
await runtime.start();
const pruner = new KeylessPruner(pool, { retentionDays: RETENTION_DAYS, chunkRecords: 3 });
const connection = await amqp.connect(config.rabbitmqUrls[0] as string);
connection.on('error', () => {});
const channel = await connection.createConfirmChannel();
after(async () => {
  await runtime.stop(5000);
  // build's teardown (registered first) may have removed the vhost, and the connection with it.
  await closeConnection(connection);
});

let addresses = 0;
/** A client address of its own (each has its own keyless budget). */
const newAddress = () => `203.0.113.${++addresses}`;

async function keyless(address: string, url: string, correlationId: string): Promise<number> {
  const response = await app.inject({
    url,
    remoteAddress: address,
    headers: { 'user-agent': 'x'.repeat(500), 'x-correlation-id': correlationId },
  });
  return response.statusCode;
}

/**
 * Waits until the audit consumer has applied everything published so far: an authenticated error (a
 * record kept for ever) published after it is recorded. The queue is applied in order.
 */
async function settled(): Promise<void> {
  const correlationId = `sentinel-${Date.now()}-${Math.random()}`;
  const response = await app.inject({
    url: '/models/no%2Fsuch-model',
    headers: { 'x-api-key': keys.reader, 'x-correlation-id': correlationId },
  });
  assert.equal(response.statusCode, 404);
  await waitUntil(
    `the audit record of ${correlationId}`,
    async () => (await records('correlation_id = $1', [correlationId])) === 1,
    30_000,
  );
}

async function records(where: string, values: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_records WHERE ${where}`,
    values,
  );
  return rows[0]?.n ?? 0;
}

/** Publishes the stored envelopes again, as a redelivery or a dead-letter replay would. */
async function publishCopies(where: string, values: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ envelope: TelemetryEvent }>(
    `SELECT envelope FROM audit_records WHERE ${where} ORDER BY id`,
    values,
  );
  for (const { envelope } of rows) {
    channel.publish(EXCHANGES.errors, 'api.error', Buffer.from(JSON.stringify(envelope)), {
      persistent: true,
      contentType: 'application/json',
      messageId: envelope.event_id,
      type: envelope.event_type,
    });
  }
  await channel.waitForConfirms();
  return rows.length;
}

interface KeylessCountsBody {
  items: Array<{ day: string; status: number; code: string; count: number; pruned: number }>;
  truncated: boolean;
  pruned_through: { chain_position: number; hash: string; occurred_before: string } | null;
}

async function keylessCounts(): Promise<KeylessCountsBody> {
  const response = await app.inject({ url: '/audit/keyless?days=2', headers: { 'x-api-key': keys.admin } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

/** Requests counted by GET /audit/keyless for one status and code, summed over the days. */
function counted(body: KeylessCountsBody, status: number, code: string): { count: number; pruned: number } {
  const items = body.items.filter((item) => item.status === status && item.code === code);
  return {
    count: items.reduce((sum, item) => sum + item.count, 0),
    pruned: items.reduce((sum, item) => sum + item.pruned, 0),
  };
}

async function verifies(): Promise<void> {
  const verification = await verifyAuditTrail(pool);
  assert.equal(verification.ok, true, JSON.stringify(verification.broken));
}

interface AuditRow extends Row {
  check(): Promise<void>;
}

/** Sent by the rows before the pruning, checked by the rows after it. */
const sent = { unauthorized: 0, notFound: 0 };
/** The keyless envelopes as recorded before they were pruned, for the copies that come after. */
let prunedEnvelopes: TelemetryEvent[] = [];

const rows: AuditRow[] = [
  {
    name: 'a keyless flood refused with 429 leaves no audit record: only the requests under the limit are recorded',
    async check() {
      const address = newAddress();
      const statuses: number[] = [];
      for (let i = 0; i < 40; i++) statuses.push(await keyless(address, '/no-such-route', `flood-${i}`));
      assert.deepEqual(statuses.slice(0, LIMIT), Array(LIMIT).fill(404));
      assert.deepEqual(statuses.slice(LIMIT), Array(40 - LIMIT).fill(429));
      sent.notFound += LIMIT;
      await settled();
      assert.equal(
        await records("correlation_id LIKE 'flood-%'"),
        LIMIT,
        'one record per request under the limit',
      );
      assert.equal(
        await records("correlation_id LIKE 'flood-%' AND chain_key = $1", [KEYLESS_CHAIN_KEY]),
        LIMIT,
      );
    },
  },
  {
    name: "keyless 4xx that pass go to the '~keyless' chain, even when they name a model; keyed errors do not",
    async check() {
      const address = newAddress();
      assert.equal(await keyless(address, '/models/openai%2Fgpt-4', 'named-1'), 401);
      assert.equal(await keyless(address, '/models', 'named-2'), 401);
      sent.unauthorized += 2;
      const keyed = await app.inject({
        url: '/models/openai%2Fgpt-4',
        headers: { 'x-api-key': keys.reader, 'x-correlation-id': 'named-keyed' },
      });
      assert.equal(keyed.statusCode, 404);
      await settled();
      assert.equal(await records("correlation_id LIKE 'named-_' AND chain_key = $1", [KEYLESS_CHAIN_KEY]), 2);
      assert.equal(await records("correlation_id = 'named-keyed' AND chain_key = 'openai/gpt-4'"), 1);
      await verifies();
    },
  },
  {
    name: 'copies of keyless errors still held (redelivered, replayed) are recorded once',
    async check() {
      const before = await records('chain_key = $1', [KEYLESS_CHAIN_KEY]);
      assert.ok((await publishCopies('chain_key = $1', [KEYLESS_CHAIN_KEY])) > 0);
      await settled();
      assert.equal(await records('chain_key = $1', [KEYLESS_CHAIN_KEY]), before);
      const body = await keylessCounts();
      assert.deepEqual(counted(body, 404, 'ROUTE_NOT_FOUND').count, sent.notFound);
      assert.deepEqual(counted(body, 401, 'UNAUTHENTICATED').count, sent.unauthorized);
      assert.equal(body.pruned_through, null, 'nothing pruned yet');
    },
  },
  {
    name: 'within the retention nothing is pruned; the table refuses to delete a keyless record not pruned',
    async check() {
      assert.equal(await pruner.prune(new Date()), 0);
      await assert.rejects(
        pool.query('DELETE FROM audit_records WHERE chain_key = $1', [KEYLESS_CHAIN_KEY]),
        /append-only: DELETE is not allowed/,
      );
      await assert.rejects(
        pool.query("DELETE FROM audit_records WHERE chain_key <> '~keyless'"),
        /append-only: DELETE is not allowed/,
      );
    },
  },
  {
    name: 'past the retention, keyless records become counts: a whole prefix pruned, the head recorded, verify passes, every other record kept',
    async check() {
      const others = await records('chain_key <> $1', [KEYLESS_CHAIN_KEY]);
      const held = await records('chain_key = $1', [KEYLESS_CHAIN_KEY]);
      const { rows: envelopes } = await pool.query<{ envelope: TelemetryEvent }>(
        'SELECT envelope FROM audit_records WHERE chain_key = $1 ORDER BY chain_position',
        [KEYLESS_CHAIN_KEY],
      );
      prunedEnvelopes = envelopes.map((row) => row.envelope);
      const pruned = await pruner.prune(new Date(Date.now() + (RETENTION_DAYS + 1) * DAY_MS));
      assert.equal(pruned, held, 'all of them, in chunks of 3');
      assert.equal(await records('chain_key = $1', [KEYLESS_CHAIN_KEY]), 0);
      assert.equal(await records('chain_key <> $1', [KEYLESS_CHAIN_KEY]), others);
      const { rows: heads } = await pool.query(
        'SELECT first_position::int, last_position::int, first_prev_hash, last_hash FROM audit_chain_heads WHERE chain_key = $1',
        [KEYLESS_CHAIN_KEY],
      );
      assert.equal(
        heads[0].first_position,
        heads[0].last_position + 1,
        'the chain starts after its last record',
      );
      assert.deepEqual(heads[0].first_prev_hash, heads[0].last_hash, 'from the pruned head');
      const body = await keylessCounts();
      assert.deepEqual(counted(body, 404, 'ROUTE_NOT_FOUND'), {
        count: sent.notFound,
        pruned: sent.notFound,
      });
      assert.deepEqual(counted(body, 401, 'UNAUTHENTICATED'), {
        count: sent.unauthorized,
        pruned: sent.unauthorized,
      });
      assert.equal(body.pruned_through?.chain_position, heads[0].last_position);
      assert.equal(body.pruned_through?.hash, heads[0].last_hash.toString('hex'));
      await verifies();
    },
  },
  {
    name: 'copies of pruned keyless errors, arriving after the retention, are neither recorded nor counted again',
    async check() {
      // The worker's clock past the retention, as it is when a pruning has happened.
      daysAhead = RETENTION_DAYS + 1;
      try {
        assert.ok(prunedEnvelopes.length > 0);
        for (const envelope of prunedEnvelopes) {
          channel.publish(EXCHANGES.errors, 'api.error', Buffer.from(JSON.stringify(envelope)), {
            persistent: true,
            contentType: 'application/json',
            messageId: envelope.event_id,
            type: envelope.event_type,
          });
        }
        await channel.waitForConfirms();
        // An authenticated sentinel published after them is recorded: the copies were consumed before it.
        await settled();
        const ids = prunedEnvelopes.map((envelope) => envelope.event_id);
        assert.equal(await records('event_id = ANY($1::uuid[])', [ids]), 0, 'not recorded again');
        const body = await keylessCounts();
        assert.deepEqual(counted(body, 404, 'ROUTE_NOT_FOUND'), {
          count: sent.notFound,
          pruned: sent.notFound,
        });
        assert.deepEqual(counted(body, 401, 'UNAUTHENTICATED'), {
          count: sent.unauthorized,
          pruned: sent.unauthorized,
        });
        await verifies();
      } finally {
        daysAhead = 0;
      }
    },
  },
  {
    name: 'keyless errors after a pruning continue the chain from the pruned head, and verify passes',
    async check() {
      const address = newAddress();
      assert.equal(await keyless(address, '/models', 'later-1'), 401);
      assert.equal(await keyless(address, '/nowhere', 'later-2'), 404);
      sent.unauthorized += 1;
      sent.notFound += 1;
      await settled();
      const { rows } = await pool.query(
        "SELECT chain_position::int FROM audit_records WHERE correlation_id LIKE 'later-%' ORDER BY chain_position",
      );
      const { rows: heads } = await pool.query(
        'SELECT first_position::int FROM audit_chain_heads WHERE chain_key = $1',
        [KEYLESS_CHAIN_KEY],
      );
      assert.deepEqual(
        rows.map((row) => row.chain_position),
        [heads[0].first_position, heads[0].first_position + 1],
      );
      await verifies();
      const body = await keylessCounts();
      assert.deepEqual(counted(body, 404, 'ROUTE_NOT_FOUND'), {
        count: sent.notFound,
        pruned: sent.notFound - 1,
      });
      assert.deepEqual(counted(body, 401, 'UNAUTHENTICATED'), {
        count: sent.unauthorized,
        pruned: sent.unauthorized - 1,
      });
    },
  },
  {
    name: 'GET /audit/keyless is for admins: a reader gets 403, no key 401',
    async check() {
      const reader = await app.inject({ url: '/audit/keyless', headers: { 'x-api-key': keys.reader } });
      assert.equal(reader.statusCode, 403);
      assert.equal(
        (await app.inject({ url: '/audit/keyless', remoteAddress: newAddress() })).statusCode,
        401,
      );
    },
  },
];

rowTable('what the audit trail keeps of keyless traffic', rows, (row) => row.check());
