/**
 * Hostile (issue 17, item 9): queue statistics on a broker that does not offer the management API the
 * configuration names — a stock RabbitMQ without the plugin, something else on its port, wrong
 * credentials, a port that never answers — must still come from the broker, by AMQP passive declares,
 * and GET /health must say which source answered and why it fell back. One row per case: the management
 * URL given, and what /health must show.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { build } from '../../helper.ts';
import { freePort } from '../../support/free-port.ts';
import { waitUntil } from '../../support/wait-until.ts';

/** Servers of this file (a non-RabbitMQ HTTP server, a silent port), closed after it. */
const servers: Array<http.Server | net.Server> = [];
const sockets = new Set<net.Socket>();
after(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

async function listening(server: http.Server | net.Server): Promise<number> {
  servers.push(server);
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

const notRabbit = await listening(
  http.createServer((_request, response) =>
    response.writeHead(404, { 'content-type': 'text/html' }).end('<h1>no</h1>'),
  ),
);
// Accepts the connection, never answers.
const silent = await listening(net.createServer(() => {}));
const management = new URL(process.env.TEST_RABBITMQ_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672');
const wrongPassword = Object.assign(new URL(management), { password: 'not-the-password' });

interface Row {
  name: string;
  /** RABBITMQ_MANAGEMENT_URL. */
  managementUrl: string;
  source: 'management' | 'amqp';
  /** The node that must have answered (`host:port`), when it matters. */
  node?: string;
  /** Why AMQP answered in place of the management API; null when it did not have to. */
  fallback: RegExp | null;
}

const rows: Row[] = [
  {
    name: 'a stock broker, no management plugin (nothing on its port): AMQP answers, and says why',
    managementUrl: `http://guest:guest@127.0.0.1:${await freePort()}`,
    source: 'amqp',
    fallback: /ECONNREFUSED/,
  },
  {
    name: 'something else on the port (404 to /api): AMQP answers',
    managementUrl: `http://guest:guest@127.0.0.1:${notRabbit}`,
    source: 'amqp',
    fallback: /answered 404/,
  },
  {
    name: 'the management API refuses the credentials (401): AMQP answers',
    managementUrl: wrongPassword.toString(),
    source: 'amqp',
    fallback: /answered 401/,
  },
  {
    name: 'a port that accepts and never answers: AMQP answers after the time-out',
    managementUrl: `http://guest:guest@127.0.0.1:${silent}`,
    source: 'amqp',
    fallback: /no answer in time/,
  },
  {
    name: 'RABBITMQ_MANAGEMENT_URL=off: AMQP, no fallback to explain',
    managementUrl: 'off',
    source: 'amqp',
    fallback: null,
  },
  {
    name: 'a list whose first node has no plugin: the next node’s management API answers',
    managementUrl: `http://guest:guest@127.0.0.1:${await freePort()},${management}`,
    source: 'management',
    node: management.host,
    fallback: null,
  },
  {
    name: 'the management API answers: it is the source',
    managementUrl: management.toString(),
    source: 'management',
    node: management.host,
    fallback: null,
  },
];

interface QueueItem {
  name: string;
  exists: boolean;
  messages_ready: number | null;
  messages_unacknowledged: number | null;
  consumers: number | null;
}

interface HealthQueues {
  source: string;
  node: string | null;
  error: string | null;
  fallback_reason: string | null;
  items: QueueItem[];
}

test(`the ${rows.length} rows have unique names`, () => {
  assert.equal(new Set(rows.map((row) => row.name)).size, rows.length);
});

// The rows mostly wait (for the management API's statistics, for a time-out): all at once.
describe('rows, at once', { concurrency: true }, () => {
  for (const row of rows) {
    test(row.name, async (t) => {
      const { app, keys, services } = await build(t, { RABBITMQ_MANAGEMENT_URL: row.managementUrl });
      // Five api.error events for logging.errors, which nothing consumes here (nor fills, as /health does
      // metrics.updates): a depth to count.
      for (let index = 0; index < 5; index++) {
        await app.inject({ url: '/models/none%2Fhere', headers: { 'x-api-key': keys.reader } });
      }
      await waitUntil(
        'the events confirmed',
        () => services.bus?.status().publisher.counters.confirmed === 5,
        15_000,
      );
      let queues: HealthQueues | undefined;
      await waitUntil(
        `/health to report every queue from ${row.source}`,
        async () => {
          queues = ((await app.inject({ url: '/health' })).json() as { queues: HealthQueues }).queues;
          const errors = queues.items.find((item) => item.name === 'logging.errors');
          // The management API's counters lag by its statistics interval; AMQP's are exact at once.
          return (
            queues.items.every((item) => item.exists) &&
            errors?.messages_ready === 5 &&
            errors.consumers !== null
          );
        },
        20_000,
        { intervalMs: 250 },
      );
      assert.ok(queues !== undefined);
      assert.equal(queues.source, row.source, JSON.stringify(queues));
      assert.equal(queues.error, null);
      if (row.node !== undefined) assert.equal(queues.node, row.node);
      if (row.fallback === null) assert.equal(queues.fallback_reason, null);
      else assert.match(queues.fallback_reason ?? '', row.fallback);
      const errors = queues.items.find((item) => item.name === 'logging.errors');
      assert.equal(errors?.messages_ready, 5, 'the events nothing has consumed');
      assert.equal(errors?.consumers, 0);
      if (row.source === 'amqp') {
        // Only the management API knows what is delivered and not acknowledged: unknown, not 0.
        assert.ok(queues.items.every((item) => item.messages_unacknowledged === null));
      }
      const text = JSON.stringify(queues);
      assert.doesNotMatch(text, /not-the-password|guest:guest/, 'no credentials in /health');
    });
  }
});
