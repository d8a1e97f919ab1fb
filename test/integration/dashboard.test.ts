/**
 * The live dashboard in real headless Chromium against the whole app (real RabbitMQ vhost and
 * PostgreSQL database): the page loads without console errors, the charts move with generated traffic,
 * a dead letter made from a poison message is replayed from the page with an admin key, and the
 * broker-down state shows and clears when the API's path to RabbitMQ (a TCP proxy) is cut and healed.
 * Screenshots are saved under test-results/dashboard/.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import amqp from 'amqplib';
import type { Page } from 'playwright-core';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { buildTopology, EXCHANGES } from '../../src/bus/topology.ts';
import { auditConsumer } from '../../src/consumers/audit/audit-consumer.ts';
import { ConsumerRuntime } from '../../src/consumers/consumer-runtime.ts';
import { dlqConsumer } from '../../src/consumers/dlq/dlq-consumer.ts';
import { build, modelBody } from '../helper.ts';
import { connectDashboard, launchChromium, openPage, screenshot } from '../support/browser.ts';
import { TEST_RABBITMQ_URL } from '../support/rabbitmq-vhost.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitUntil } from '../support/wait-until.ts';

// The API reaches RabbitMQ through a proxy this file controls; heartbeats of 1 s find a partition fast.
const proxy = await startTcpProxy({ targetPort: Number(new URL(TEST_RABBITMQ_URL).port || 5672) });
after(() => proxy.close());
const system = await build(
  { after },
  { RABBITMQ_HEARTBEAT_S: '1' },
  { rabbitmqUrl: (url) => proxy.url(url) },
);
const base = await system.app.listen({ host: '127.0.0.1', port: 0 });

// Consumers beside the API, on its database and (directly, not through the proxy) its vhost.
const retryDelaysMs = [200, 400];
const runtime = new ConsumerRuntime({
  urls: [system.vhost.url],
  pool: system.services.pool,
  topology: buildTopology({ retryDelaysMs }),
  consumers: [auditConsumer(), dlqConsumer({ error() {} })],
  retryDelaysMs,
});
await runtime.start();
after(() => runtime.stop(5000));

const browser = await launchChromium({ after });

const reader = { 'x-api-key': system.keys.reader };
const writer = { 'x-api-key': system.keys.writer };

type Series = Array<Array<number | null>>;
/**
 * What the page's script exposes as `window.dashboard` (this file is type-checked without the DOM). The
 * functions given to `page.evaluate` run in the page: they name nothing of this file but types.
 */
interface PageGlobals {
  dashboard: { charts: Record<'events' | 'latency' | 'errors', { data: Series }> };
  document: { documentElement: { scrollWidth: number } };
}

/** Series of one chart, as the page holds them. */
function chartData(page: Page, chart: 'events' | 'latency' | 'errors'): Promise<Series> {
  return page.evaluate((name) => (globalThis as unknown as PageGlobals).dashboard.charts[name].data, chart);
}

/** Requests answered by the API, summed over what the events chart holds. */
async function chartedEvents(page: Page): Promise<number> {
  const data = await chartData(page, 'events');
  return data.slice(1).reduce((sum, series) => sum + series.reduce<number>((a, b) => a + (b ?? 0), 0), 0);
}

function canvasImage(page: Page, selector: string): Promise<string> {
  return page
    .locator(selector)
    .evaluate((canvas) => (canvas as unknown as { toDataURL(): string }).toDataURL());
}

test('the page loads with no console errors and shows the live state; a phone gets one column', async () => {
  const { page, errors } = await openPage(browser);
  await connectDashboard(page, base, system.keys.reader);
  await page.locator('#broker-state[data-state="up"]').waitFor();
  await page.locator('#database-state[data-state="up"]').waitFor();
  await page.locator('#queues tbody tr').first().waitFor();
  assert.ok((await page.locator('#queues tbody tr').count()) >= 4, 'a row per queue');
  assert.match(String(await page.locator('#publisher').textContent()), /connected/);
  assert.equal(await page.locator('#banner').isHidden(), true);
  // Three charts, drawn by uPlot.
  assert.equal(await page.locator('.chart .uplot canvas').count(), 3);
  await screenshot(page, 'laptop');

  const phone = await openPage(browser, { width: 390, height: 844 });
  // The key is remembered per browser context: this is a new one.
  await connectDashboard(phone.page, base, system.keys.reader);
  const boxes = await Promise.all(
    ['#chart-events', '#chart-latency'].map((id) => phone.page.locator(id).boundingBox()),
  );
  assert.ok(boxes[0] && boxes[1] && boxes[1].y > boxes[0].y, 'stacked, one column');
  const width = await phone.page.evaluate(
    () => (globalThis as unknown as PageGlobals).document.documentElement.scrollWidth,
  );
  assert.ok(width <= 390, `no horizontal scroll on a phone (page is ${width}px wide)`);
  await screenshot(phone.page, 'phone');
  assert.deepEqual([...errors, ...phone.errors], []);
  await page.context().close();
  await phone.page.context().close();
});

test('the page is served with its Content Security Policy, and a violation of it fails the page', async () => {
  const { page, errors } = await openPage(browser);
  const response = await page.goto(`${base}/dashboard`);
  const headers = response?.headers() ?? {};
  assert.match(headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  await connectDashboard(page, base, system.keys.reader);
  assert.deepEqual(errors, [], 'the page itself breaks none of it');
  // What the watcher must catch: an inline script, which the policy refuses.
  await page.addScriptTag({ content: 'globalThis.injected = true;' }).catch(() => undefined);
  await waitUntil(
    'the violation reported',
    () => errors.some((error) => /^csp: script-src/.test(error)),
    5000,
  );
  await page.context().close();
});

test('charts move after generated traffic; errors appear with their correlation id and open the audit trail', async () => {
  const { page, errors } = await openPage(browser);
  await connectDashboard(page, base, system.keys.reader);
  const before = await chartedEvents(page);
  const canvasBefore = await canvasImage(page, '#chart-events canvas');

  const created = await system.app.inject({
    method: 'POST',
    url: '/models',
    headers: writer,
    payload: modelBody(),
  });
  assert.equal(created.statusCode, 201);
  const modelId = encodeURIComponent(created.json().model_id);
  const missing = `missing-${randomUUID()}`;
  for (let i = 0; i < 60; i++) {
    await fetch(`${base}/models/${modelId}`, { headers: reader });
    await fetch(`${base}/models?vendor_id=OpenAI`, { headers: reader });
  }
  const notFound = await fetch(`${base}/models/test%2F${missing}`, {
    headers: { ...reader, 'x-correlation-id': missing },
  });
  assert.equal(notFound.status, 404);

  await waitUntil(
    'the events chart to take the traffic in',
    async () => (await chartedEvents(page)) >= before + 121,
    10_000,
    {
      intervalMs: 200,
    },
  );
  const latency = await chartData(page, 'latency');
  assert.ok(
    latency[3]?.some((p99) => p99 !== null && p99 > 0),
    'a p99 above 0 ms',
  );
  // The 404 came last: its second may reach the chart a tick after the rest.
  await waitUntil(
    'a 4xx rate above 0 on the error chart',
    async () => ((await chartData(page, 'errors'))[1] ?? []).some((rate) => rate !== null && rate > 0),
    10_000,
    { intervalMs: 200 },
  );
  const canvasAfter = await canvasImage(page, '#chart-events canvas');
  assert.notEqual(canvasAfter, canvasBefore, 'the chart was redrawn');
  // The traffic's events were confirmed by RabbitMQ: the publisher card shows their latency percentiles.
  await page
    .locator('#publisher dd[data-fact="publish latency (1 min)"]', {
      hasText: /^p50 \d+(\.\d)? · p95 \d+(\.\d)? · p99 \d+(\.\d)? ms$/,
    })
    .waitFor({ timeout: 10_000 });

  const link = page.locator(`#recent-errors a[data-correlation-id="${missing}"]`);
  await link.waitFor();
  assert.equal(await link.getAttribute('href'), `/audit?correlation_id=${missing}`);
  const cells = await page.locator('#recent-errors tbody tr').first().locator('td').allTextContents();
  assert.deepEqual(cells.slice(1, 4), ['404', 'MODEL_NOT_FOUND', 'GET /models/:model_id']);
  // The audit consumer writes the trail; the link asks for an admin key and shows it.
  await waitUntil(
    'the error in the audit trail',
    async () => {
      const { rows } = await system.services.pool.query(
        'SELECT 1 FROM audit_records WHERE correlation_id = $1',
        [missing],
      );
      return rows.length === 1;
    },
    15_000,
    { intervalMs: 100 },
  );
  await link.click();
  await page.locator('#admin-key').fill(system.keys.admin);
  await page.locator('#admin-form button[value="ok"]').click();
  await page.locator('#audit').getByText(missing).first().waitFor();
  assert.match(String(await page.locator('#audit').textContent()), /api\.error/);
  await screenshot(page, 'traffic');
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('a dead letter is replayed from the page with an admin key', async () => {
  const { page, errors } = await openPage(browser);
  await connectDashboard(page, base, system.keys.reader);

  // A poison message (not JSON) on the models exchange: the audit consumer dead-letters it at once.
  const connection = await amqp.connect(system.vhost.url);
  after(() => closeConnection(connection));
  const channel = await connection.createConfirmChannel();
  channel.publish(EXCHANGES.models, 'model.queried', Buffer.from('{not json'), {
    persistent: true,
    messageId: randomUUID(),
  });
  await channel.waitForConfirms();
  const deadLetterId = async () => {
    const { rows } = await system.services.pool.query<{ id: string }>(
      `SELECT id FROM dead_letters WHERE state = 'dead' AND original_queue = 'audit.trail'`,
    );
    return rows[0]?.id;
  };
  await waitUntil('the poison archived', async () => (await deadLetterId()) !== undefined, 20_000, {
    intervalMs: 100,
  });
  const id = (await deadLetterId()) as string;
  // The count comes with the stream (refreshed every 5 s).
  await page.locator('#dead-letters-count', { hasText: /^1$/ }).waitFor({ timeout: 15_000 });

  await page.locator('#dlq-show').click();
  await page.locator('#admin-dialog').waitFor();
  await page.locator('#admin-key').fill(system.keys.admin);
  await page.locator('#admin-form button[value="ok"]').click();
  const row = page.locator(`#dead-letters tr[data-id="${id}"]`);
  await row.waitFor();
  assert.match(String(await row.textContent()), /POISON_MESSAGE/);
  await screenshot(page, 'dead-letter');

  await row.locator('button.replay-one').click();
  await page.locator('#dlq-status', { hasText: /Replayed 1 of 1/ }).waitFor({ timeout: 15_000 });
  const { rows } = await system.services.pool.query<{ state: string; replayed_by: string }>(
    'SELECT state, replayed_by FROM dead_letters WHERE id = $1',
    [id],
  );
  assert.equal(rows[0]?.state, 'replayed');
  assert.match(String(rows[0]?.replayed_by), /^api-key:/);
  await screenshot(page, 'replayed');
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('the broker-down state shows when the API loses RabbitMQ, and clears by itself when it is back', async () => {
  const { page, errors } = await openPage(browser);
  await connectDashboard(page, base, system.keys.reader);
  await page.locator('#broker-state[data-state="up"]').waitFor();
  try {
    // A partition: no byte passes; the publisher's heartbeats (1 s) find it, and it keeps reconnecting.
    proxy.blackhole(true);
    proxy.cut();
    await page.locator('#broker-state[data-state="down"]').waitFor({ timeout: 20_000 });
    await page.locator('#banner', { hasText: 'broker down' }).waitFor();
    // Requests still work, and their events wait in the spool.
    const response = await fetch(`${base}/models`, { headers: reader });
    assert.equal(response.status, 200);
    await page.locator('#publisher dd[data-fact="unpublished"]', { hasText: /^[1-9]\d*$/ }).waitFor();
    await page.locator('#stream-state[data-state="live"]').waitFor();
    await screenshot(page, 'broker-down');
  } finally {
    proxy.blackhole(false);
  }
  await page.locator('#broker-state[data-state="up"]').waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('#banner').isHidden(), true);
  assert.deepEqual(errors, []);
  await page.context().close();
});
