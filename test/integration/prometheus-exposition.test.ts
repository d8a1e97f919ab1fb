/**
 * The Prometheus exposition of the API process, wired as `telemetry-bus start` wires it (the consumers
 * beside the API, on its registry), after real traffic: both endpoints, content negotiation, the series
 * and their labels, values that move by exactly what was done, the scrape token, `promtool check
 * metrics`, the metrics reference, and the names the Grafana dashboard queries.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import amqp from 'amqplib';
import pino from 'pino';
import { EXCHANGES, QUEUES, WORK_QUEUES } from '../../src/bus/topology.ts';
import { runConsumers } from '../../src/cli/run-consumers.ts';
import { CONSUMER_NAMES } from '../../src/consumers/consumer-names.ts';
import { build, modelBody, type TestApp } from '../helper.ts';
import {
  documentedFamilies,
  type Exposition,
  metricNamesIn,
  parseExposition,
  promtoolCheckMetrics,
} from '../support/prometheus-text.ts';
import { waitUntil } from '../support/wait-until.ts';

const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
const RABBITMQ_PROMETHEUS_URL = process.env.TEST_RABBITMQ_PROMETHEUS_URL ?? 'http://127.0.0.1:15692/metrics';
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

/** Teardowns run last-registered first: the consumers stop before the app, the vhost and the database go. */
const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});
const teardown = { after: (fn: () => unknown) => cleanups.push(fn) };

let system: TestApp;

async function scrape(
  url = '/metrics/prometheus',
  headers: Record<string, string> = {},
): Promise<Exposition> {
  const response = await system.app.inject({ method: 'GET', url, headers });
  assert.equal(response.statusCode, 200, response.body);
  return parseExposition(response.body);
}

before(async () => {
  system = await build(teardown);
  const consumers = await runConsumers(
    system.config,
    system.services.pool,
    CONSUMER_NAMES,
    pino({ level: 'silent' }),
    system.services.metrics,
  );
  teardown.after(() => consumers.stop(5000));
  await consumers.runtime.start();
  await waitUntil(
    'the publisher connected',
    () => system.services.bus?.status().publisher.state === 'connected',
    15_000,
  );
});

describe('the Prometheus exposition of the API', () => {
  test('GET /metrics/prometheus serves the Prometheus text format 0.0.4', async () => {
    const response = await system.app.inject({ method: 'GET', url: '/metrics/prometheus' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.match(response.body, /^# TYPE process_cpu_seconds_total counter$/m);
    assert.doesNotMatch(response.body, /# EOF/);
  });

  test("GET /metrics with Prometheus's Accept header serves OpenMetrics", async () => {
    const response = await system.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { accept: PROMETHEUS_ACCEPT },
    });
    assert.equal(response.statusCode, 200);
    assert.equal(
      response.headers['content-type'],
      'application/openmetrics-text; version=1.0.0; charset=utf-8',
    );
    assert.match(response.body, /^# TYPE telemetry_events_emitted counter$/m);
    assert.match(response.body, /^telemetry_events_emitted_total\{event_type="api.request"\} \d+$/m);
    assert.ok(response.body.endsWith('\n# EOF\n'));
    // And OpenMetrics on /metrics/prometheus too, when preferred.
    const explicit = await system.app.inject({
      method: 'GET',
      url: '/metrics/prometheus',
      headers: { accept: PROMETHEUS_ACCEPT },
    });
    assert.match(String(explicit.headers['content-type']), /^application\/openmetrics-text/);
  });

  test('GET /metrics with Accept: text/plain serves the Prometheus text format', async () => {
    for (const accept of ['text/plain', 'text/plain;version=0.0.4;q=0.5,*/*;q=0.1']) {
      const response = await system.app.inject({ method: 'GET', url: '/metrics', headers: { accept } });
      assert.equal(response.statusCode, 200, accept);
      assert.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    }
  });

  test('a client preferring JSON (or saying nothing) goes on to the JSON route, never the exposition', async () => {
    for (const accept of ['application/json', 'application/json, text/plain;q=0.9', '*/*', undefined]) {
      const response = await system.app.inject({
        method: 'GET',
        url: '/metrics',
        headers: accept === undefined ? {} : { accept },
      });
      assert.match(String(response.headers['content-type']), /^application\/json/, String(accept));
      assert.doesNotMatch(response.body, /^# TYPE /m, String(accept));
    }
  });

  test('beside the JSON GET /metrics, which needs a reader key, a scrape without a key gets the exposition', async () => {
    const app = system.app;

    const scraped = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { accept: PROMETHEUS_ACCEPT },
    });
    assert.equal(scraped.statusCode, 200);
    assert.match(String(scraped.headers['content-type']), /^application\/openmetrics-text/);
    const plain = await app.inject({ method: 'GET', url: '/metrics?x=1', headers: { accept: 'text/plain' } });
    assert.equal(plain.statusCode, 200);
    assert.match(String(plain.headers['content-type']), /^text\/plain; version=0\.0\.4/);

    const keyless = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { accept: 'application/json' },
    });
    assert.equal(keyless.statusCode, 401);
    const json = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { accept: 'application/json', 'x-api-key': system.keys.reader },
    });
    assert.equal(json.statusCode, 200);
    assert.match(String(json.headers['content-type']), /^application\/json/);
    assert.ok('requests' in json.json(), 'the JSON metrics report');
    // The scrape is in the histogram under the route's template.
    const now = await scrape();
    assert.ok(
      (now.value('http_request_duration_seconds_count', {
        route: '/metrics',
        method: 'GET',
        status_code: '200',
      }) ?? 0) >= 2,
    );
  });

  test('the request histogram counts responses by route template, method and status code', async () => {
    const before = await scrape();
    const model = modelBody();
    const id = encodeURIComponent(model.model_id as string);
    const writer = { 'x-api-key': system.keys.writer };
    const reader = { 'x-api-key': system.keys.reader };
    const inject = (method: 'GET' | 'POST', url: string, headers: Record<string, string>, payload?: object) =>
      system.app.inject({ method, url, headers, payload });
    assert.equal((await inject('POST', '/models', writer, model)).statusCode, 201);
    for (let i = 0; i < 3; i++) assert.equal((await inject('GET', `/models/${id}`, reader)).statusCode, 200);
    assert.equal((await inject('GET', '/models/test%2Fnone', reader)).statusCode, 404);
    assert.equal((await inject('GET', '/no/such/route', reader)).statusCode, 404);
    assert.equal((await inject('POST', '/models', writer, { model_id: 'x' })).statusCode, 400);
    const now = await scrape();

    const count = (exposition: Exposition, route: string, method: string, status: string) =>
      exposition.value('http_request_duration_seconds_count', { route, method, status_code: status }) ?? 0;
    const delta = (route: string, method: string, status: string) =>
      count(now, route, method, status) - count(before, route, method, status);
    assert.equal(delta('/models', 'POST', '201'), 1);
    assert.equal(delta('/models/:model_id', 'GET', '200'), 3);
    assert.equal(delta('/models/:model_id', 'GET', '404'), 1);
    assert.equal(delta('unmatched', 'GET', '404'), 1);
    assert.equal(delta('/models', 'POST', '400'), 1);
    // The scrape before this one is in the histogram too, under its own route.
    assert.ok(count(now, '/metrics/prometheus', 'GET', '200') >= 1);

    // A histogram in seconds: cumulative buckets ending in +Inf = _count, and a positive _sum.
    const labels = { route: '/models/:model_id', method: 'GET', status_code: '200' };
    const buckets = now.samples
      .filter(
        (sample) =>
          sample.name === 'http_request_duration_seconds_bucket' &&
          Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
      )
      .map((sample) => ({
        le: sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le),
        value: sample.value,
      }));
    assert.ok(buckets.length >= 10);
    for (let i = 1; i < buckets.length; i++) {
      assert.ok((buckets[i]?.le ?? 0) > (buckets[i - 1]?.le ?? 0));
      assert.ok((buckets[i]?.value ?? 0) >= (buckets[i - 1]?.value ?? 0));
    }
    assert.equal(buckets.at(-1)?.le, Infinity);
    assert.equal(buckets.at(-1)?.value, now.value('http_request_duration_seconds_count', labels));
    const sum = now.value('http_request_duration_seconds_sum', labels) ?? 0;
    assert.ok(sum > 0 && sum < 30, `sum ${sum} s`);
    assert.equal(now.types.get('http_request_duration_seconds'), 'histogram');
  });

  test('every scrape is one request with one api.request event, and nothing more', async () => {
    const first = await scrape();
    await scrape();
    const third = await scrape();
    const emitted = (exposition: Exposition) =>
      exposition.value('telemetry_events_emitted_total', { event_type: 'api.request' }) ?? 0;
    // Each scrape's own event is emitted after it has been rendered: the third sees the first two.
    assert.equal(emitted(third) - emitted(first), 2);
    assert.equal(
      third.sum('telemetry_events_emitted_total') - first.sum('telemetry_events_emitted_total'),
      2,
    );
  });

  test('events by type, and the publisher and spool series', async () => {
    const before = await scrape();
    const model = modelBody();
    await system.app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': system.keys.writer },
      payload: model,
    });
    const now = await scrape();
    const emitted = (exposition: Exposition, type: string) =>
      exposition.value('telemetry_events_emitted_total', { event_type: type }) ?? 0;
    assert.equal(emitted(now, 'model.registered') - emitted(before, 'model.registered'), 1);
    for (const type of ['model.queried', 'filter.executed', 'api.error', 'model.updated']) {
      assert.notEqual(now.value('telemetry_events_emitted_total', { event_type: type }), undefined, type);
    }
    assert.equal(now.value('telemetry_broker_connection_state', { state: 'connected' }), 1);
    assert.equal(now.value('telemetry_broker_connection_state', { state: 'disconnected' }), 0);
    for (const name of ['telemetry_spool_bytes', 'telemetry_spool_unpublished_events']) {
      assert.notEqual(now.value(name), undefined, name);
    }
    assert.equal(now.value('telemetry_events_dropped_total', { reason: 'spool_full' }), 0);
    await waitUntil(
      'the events confirmed by RabbitMQ',
      async () =>
        ((await scrape()).value('telemetry_events_confirmed_total') ?? 0) >
        (before.value('telemetry_events_confirmed_total') ?? 0),
      10_000,
    );
  });

  test('publish latency: one observation per confirmed message; GET /health shows its last minute', async () => {
    const bus = system.services.bus;
    assert.ok(bus);
    const before = await scrape();
    const confirmedBefore = bus.status().publisher.counters.confirmed;
    for (let i = 0; i < 30; i++) {
      const response = await system.app.inject({ method: 'GET', url: '/livez' });
      assert.equal(response.statusCode, 200);
    }
    await waitUntil(
      'every event confirmed',
      () =>
        bus.status().spool.unconfirmed === 0 &&
        bus.status().publisher.counters.confirmed >= confirmedBefore + 30,
      10_000,
    );
    // Read in one tick: the same confirms counted in both.
    assert.equal(bus.publishLatency.histogram.count, bus.status().publisher.counters.confirmed);

    const now = await scrape();
    const count = now.value('telemetry_publish_latency_seconds_count') ?? 0;
    assert.equal(now.types.get('telemetry_publish_latency_seconds'), 'histogram');
    assert.equal(count, now.value('telemetry_events_confirmed_total'));
    assert.ok(count - (before.value('telemetry_publish_latency_seconds_count') ?? 0) >= 30);
    assert.equal(now.value('telemetry_publish_latency_seconds_bucket', { le: '+Inf' }), count);
    assert.ok((now.value('telemetry_publish_latency_seconds_bucket', { le: '0.0005' }) ?? -1) >= 0);
    assert.ok((now.value('telemetry_publish_latency_seconds_sum') ?? -1) >= 0);

    const health = await system.app.inject({ method: 'GET', url: '/health' });
    assert.equal(health.statusCode, 200);
    const latency = health.json().publisher.latency;
    assert.equal(latency.window_seconds, 60);
    assert.ok(latency.count >= 30, `${latency.count} confirms in the last minute`);
    for (const key of ['p50_ms', 'p95_ms', 'p99_ms']) {
      assert.equal(typeof latency[key], 'number', key);
      assert.ok(latency[key] >= 0 && latency[key] < 10_000, `${key} = ${latency[key]}`);
    }
    assert.ok(latency.p50_ms <= latency.p95_ms && latency.p95_ms <= latency.p99_ms);
  });

  test('consumer event age: one observation per applied event, by consumer', async () => {
    const before = await scrape();
    const model = modelBody();
    const created = await system.app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': system.keys.writer },
      payload: model,
    });
    assert.equal(created.statusCode, 201);
    const delta = (now: Exposition, name: string, consumer: string) =>
      (now.value(name, { consumer }) ?? 0) - (before.value(name, { consumer }) ?? 0);
    await waitUntil(
      'the audit consumer applied the event',
      async () => delta(await scrape(), 'telemetry_consumer_messages_applied_total', 'audit') >= 1,
      15_000,
      { intervalMs: 200 },
    );
    const now = await scrape();
    assert.equal(now.types.get('telemetry_consumer_event_age_seconds'), 'histogram');
    for (const consumer of CONSUMER_NAMES) {
      // Every applied event observed once: the histogram's count is the applied counter, series by series.
      assert.equal(
        now.value('telemetry_consumer_event_age_seconds_count', { consumer }),
        now.value('telemetry_consumer_messages_applied_total', { consumer }),
        consumer,
      );
    }
    assert.ok(delta(now, 'telemetry_consumer_event_age_seconds_count', 'audit') >= 1);
    assert.ok(delta(now, 'telemetry_consumer_event_age_seconds_sum', 'audit') > 0);
  });

  test('consumer metrics, by consumer, for the consumers running beside the API', async () => {
    const before = await scrape();
    const model = modelBody();
    await system.app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': system.keys.writer },
      payload: model,
    });
    // model.registered goes to analytics.events and audit.trail.
    await waitUntil(
      'the audit and analytics consumers applied it',
      async () => {
        const now = await scrape();
        return ['audit', 'analytics'].every(
          (consumer) =>
            (now.value('telemetry_consumer_messages_applied_total', { consumer }) ?? 0) >
            (before.value('telemetry_consumer_messages_applied_total', { consumer }) ?? 0),
        );
      },
      15_000,
    );
    const now = await scrape();
    for (const consumer of CONSUMER_NAMES) {
      const labels = { consumer };
      assert.equal(now.value('telemetry_consumer_paused', labels), 0, consumer);
      assert.equal(now.value('telemetry_consumer_prefetch_messages', labels), system.config.consumerPrefetch);
      assert.notEqual(now.value('telemetry_consumer_inflight_messages', labels), undefined, consumer);
      for (const name of [
        'telemetry_consumer_messages_applied_total',
        'telemetry_consumer_duplicates_skipped_total',
        'telemetry_consumer_poison_messages_total',
        'telemetry_consumer_dead_lettered_total',
        'telemetry_consumer_database_pauses_total',
      ]) {
        assert.notEqual(now.value(name, labels), undefined, `${name} ${consumer}`);
      }
    }
    const batches = (exposition: Exposition) =>
      exposition.value('telemetry_consumer_batch_duration_seconds_count', { consumer: 'audit' }) ?? 0;
    assert.ok(batches(now) > batches(before));
    assert.ok((now.value('telemetry_consumer_batch_messages_sum', { consumer: 'audit' }) ?? 0) >= 1);
  });

  test('queue depths and consumer counts of every queue, from the management API', async () => {
    const queues = Object.values(QUEUES);
    const consumed = [QUEUES.analytics, QUEUES.audit, QUEUES.logging, QUEUES.metrics, QUEUES.deadLetters];
    // The management API's figures lag by up to its statistics interval (5 s): wait for them to show
    // what is true now, then check everything on one scrape.
    let last: Exposition | undefined;
    const expected = (now: Exposition) =>
      queues.every(
        (queue) =>
          now.value('telemetry_queue_messages_ready', { queue }) !== undefined &&
          now.value('telemetry_queue_messages_unacknowledged', { queue }) !== undefined,
      ) &&
      // Every consumer of the process subscribed: analytics, audit, logging, metrics and the DLQ archive.
      consumed.every((queue) => now.value('telemetry_queue_consumers', { queue }) === 1) &&
      // The retry queues have none: their messages expire back to the work queues.
      queues
        .filter((queue) => !consumed.includes(queue))
        .every((queue) => now.value('telemetry_queue_consumers', { queue }) === 0);
    await waitUntil(
      'the queue gauges showing every queue and its consumers',
      async () => {
        last = await scrape();
        return expected(last);
      },
      30_000,
      { intervalMs: 500 },
    ).catch((error: unknown) => {
      const seen = last?.samples.filter((sample) => sample.name.startsWith('telemetry_queue_'));
      throw new Error(`${String(error)}; last seen: ${JSON.stringify(seen)}`);
    });
    assert.equal(last?.value('telemetry_queue_stats_up'), 1);
    assert.ok(WORK_QUEUES.includes(QUEUES.metrics));
  });

  test('dead letters: poison counted by consumer, then archived and counted by state', async () => {
    const before = await scrape();
    const connection = await amqp.connect(system.vhost.url);
    try {
      const channel = await connection.createConfirmChannel();
      channel.publish(EXCHANGES.models, 'model.queried', Buffer.from('not json'), {
        persistent: true,
        messageId: randomUUID(),
      });
      await channel.waitForConfirms();
    } finally {
      await connection.close();
    }
    const poison = (exposition: Exposition, consumer: string) =>
      exposition.value('telemetry_consumer_poison_messages_total', { consumer }) ?? 0;
    await waitUntil(
      'the poison message counted by audit, analytics and metrics',
      async () => {
        const now = await scrape();
        return (
          poison(now, 'audit') === poison(before, 'audit') + 1 &&
          poison(now, 'analytics') === poison(before, 'analytics') + 1 &&
          poison(now, 'metrics') === poison(before, 'metrics') + 1
        );
      },
      15_000,
    );
    // The three copies reach the archive; the count is refreshed at most every 10 s.
    const dead = before.value('telemetry_dead_letters', { state: 'dead' }) ?? 0;
    await waitUntil(
      'three more dead letters archived',
      async () => (await scrape()).value('telemetry_dead_letters', { state: 'dead' }) === dead + 3,
      25_000,
      { intervalMs: 500 },
    );
    assert.equal((await scrape()).value('telemetry_dead_letters', { state: 'replayed' }), 0);
  });

  test('promtool check metrics finds nothing to complain about', async () => {
    const response = await system.app.inject({ method: 'GET', url: '/metrics/prometheus' });
    const { status, output } = await promtoolCheckMetrics(response.body);
    assert.equal(output.trim(), '', `promtool check metrics complained:\n${output}`);
    assert.equal(status, 0, `promtool check metrics exited with ${status}`);
  });

  test('docs/reference/metrics.md lists every family with its type and labels, and no other', () => {
    const documented = documentedFamilies(read('docs/reference/metrics.md'));
    const families = system.services.metrics.getMetricsAsArray() as unknown as Array<{
      name: string;
      type: string;
      labelNames?: string[];
    }>;
    for (const family of families) {
      const doc = documented.get(family.name);
      assert.ok(doc, `${family.name} is not in docs/reference/metrics.md`);
      assert.equal(doc.type, family.type, `type of ${family.name}`);
      assert.deepEqual(
        [...doc.labels].sort(),
        [...(family.labelNames ?? [])].sort(),
        `labels of ${family.name}`,
      );
      assert.ok(doc.unit !== '', `${family.name} has a unit (or —)`);
    }
    const names = new Set(families.map((family) => family.name));
    for (const name of documented.keys()) {
      assert.ok(names.has(name), `${name} is documented but not in the registry`);
    }
  });

  test("every metric the Grafana dashboard queries is in the service's or RabbitMQ's exposition", async () => {
    const dashboard = JSON.parse(read('deploy/grafana/dashboards/telemetry-bus.json')) as {
      panels: Array<{ title: string; targets?: Array<{ expr?: string }> }>;
    };
    const ours = (await scrape()).names();
    const response = await fetch(RABBITMQ_PROMETHEUS_URL).catch((error: unknown) => {
      throw new Error(
        `RabbitMQ's Prometheus endpoint ${RABBITMQ_PROMETHEUS_URL} does not answer: enable the plugin ` +
          `(rabbitmq-plugins enable rabbitmq_prometheus): ${String(error)}`,
      );
    });
    assert.equal(response.status, 200);
    const rabbit = parseExposition(await response.text()).names();
    let checked = 0;
    for (const panel of dashboard.panels) {
      for (const target of panel.targets ?? []) {
        assert.ok(target.expr, `a target of '${panel.title}' has no expr`);
        const names = metricNamesIn(target.expr);
        assert.ok(names.size > 0, `no metric found in '${target.expr}'`);
        for (const name of names) {
          assert.ok(
            ours.has(name) || rabbit.has(name),
            `'${panel.title}' queries ${name}, which nothing exposes`,
          );
          checked++;
        }
      }
    }
    assert.ok(checked >= 15, `only ${checked} metric references checked`);
  });
});

describe('METRICS_SCRAPE_TOKEN', () => {
  const token = 'scrape-token-0123456789';
  let secured: TestApp;
  before(async () => {
    secured = await build(teardown, { METRICS_SCRAPE_TOKEN: token });
  });

  test('without the bearer token, both ways to scrape are 401 UNAUTHENTICATED (each one api.error event)', async () => {
    const app = secured.app;
    // Read through the registry itself: this count must not need the token.
    const emittedErrors = async () =>
      parseExposition(await secured.services.metrics.metrics()).value('telemetry_events_emitted_total', {
        event_type: 'api.error',
      }) ?? 0;
    const before = await emittedErrors();
    for (const [url, headers] of [
      ['/metrics/prometheus', {}],
      ['/metrics/prometheus', { authorization: 'Bearer wrong-token-0123456789' }],
      ['/metrics', { accept: 'text/plain' }],
      ['/metrics', { accept: PROMETHEUS_ACCEPT, authorization: `Basic ${token}` }],
    ] as Array<[string, Record<string, string>]>) {
      const response = await app.inject({ method: 'GET', url, headers });
      assert.equal(response.statusCode, 401, `${url} ${JSON.stringify(headers)}`);
      assert.deepEqual(response.json().error.code, 'UNAUTHENTICATED');
      assert.equal(response.json().error.field, 'authorization');
    }
    assert.equal((await emittedErrors()) - before, 4);

    for (const [url, headers] of [
      ['/metrics/prometheus', {}],
      ['/metrics', { accept: PROMETHEUS_ACCEPT }],
    ] as Array<[string, Record<string, string>]>) {
      const response = await app.inject({
        method: 'GET',
        url,
        headers: { ...headers, authorization: `Bearer ${token}` },
      });
      assert.equal(response.statusCode, 200, url);
      assert.match(response.body, /^# TYPE http_request_duration_seconds histogram$/m);
    }
  });
});

describe('the management API unreachable', () => {
  test('AMQP passive declares answer in its place: ready messages and consumers, no unacknowledged', async () => {
    // Nothing listens on port 1: a broker without the management plugin.
    const blind = await build(teardown, { RABBITMQ_MANAGEMENT_URL: 'http://guest:guest@127.0.0.1:1' });
    let exposition: Exposition | undefined;
    // The queues exist once the app's publisher has connected and declared the topology.
    await waitUntil(
      'every queue of the topology in the scrape',
      async () => {
        const response = await blind.app.inject({ method: 'GET', url: '/metrics/prometheus' });
        exposition = parseExposition(response.body);
        const found = exposition;
        return [...WORK_QUEUES, QUEUES.deadLetters].every(
          (queue) =>
            found.value('telemetry_queue_messages_ready', { queue }) !== undefined &&
            found.value('telemetry_queue_consumers', { queue }) !== undefined,
        );
      },
      15_000,
      { intervalMs: 200 },
    );
    assert.equal(exposition?.value('telemetry_queue_stats_up'), 1);
    assert.equal(
      exposition?.samples.filter((sample) => sample.name === 'telemetry_queue_messages_unacknowledged')
        .length,
      0,
    );
  });

  test('the broker unreachable too: the scrape still answers, telemetry_queue_stats_up 0 and no queue samples rather than zeros', async () => {
    const blind = await build(
      teardown,
      { RABBITMQ_MANAGEMENT_URL: 'http://guest:guest@127.0.0.1:1' },
      { rabbitmqUrl: (url) => Object.assign(new URL(url), { port: '1' }).toString() },
    );
    const response = await blind.app.inject({ method: 'GET', url: '/metrics/prometheus' });
    assert.equal(response.statusCode, 200);
    const exposition = parseExposition(response.body);
    assert.equal(exposition.value('telemetry_queue_stats_up'), 0);
    for (const name of ['telemetry_queue_messages_ready', 'telemetry_queue_consumers']) {
      assert.equal(exposition.samples.filter((sample) => sample.name === name).length, 0, name);
    }
  });
});
