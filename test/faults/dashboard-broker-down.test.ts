/**
 * The dashboard while RabbitMQ itself is stopped (`rabbitmqctl stop_app`): the page says "broker down",
 * keeps updating (requests still served, the spool grows, queue figures marked stale), and recovers by
 * itself after `start_app`. In real headless Chromium; screenshots under test-results/dashboard/. The
 * broker is restored in `after` and in `finally`, whatever happens.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { build } from '../helper.ts';
import { restoreBroker, startBrokerApp, stopBrokerApp } from '../support/broker-control.ts';
import { connectDashboard, launchChromium, openPage, screenshot } from '../support/browser.ts';

after(restoreBroker);

const system = await build({ after }, { RABBITMQ_HEARTBEAT_S: '1' });
const base = await system.app.listen({ host: '127.0.0.1', port: 0 });
const browser = await launchChromium({ after });

test('rabbitmqctl stop_app: the dashboard shows the broker down and keeps updating, then recovers after start_app', async () => {
  const { page, errors } = await openPage(browser);
  await connectDashboard(page, base, system.keys.reader);
  await page.locator('#broker-state[data-state="up"]').waitFor({ timeout: 15_000 });
  try {
    await stopBrokerApp();
    await page.locator('#broker-state[data-state="down"]').waitFor({ timeout: 30_000 });
    await page.locator('#banner', { hasText: 'broker down' }).waitFor();
    await page.locator('#queues-note', { hasText: /stale|unavailable/ }).waitFor({ timeout: 15_000 });
    // Still live: requests are served and their events wait in the spool, which the page shows.
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`${base}/models`, { headers: { 'x-api-key': system.keys.reader } });
      assert.equal(response.status, 200);
    }
    await page.locator('#publisher dd[data-fact="unpublished"]', { hasText: /^[1-9]\d*$/ }).waitFor();
    assert.equal(await page.locator('#stream-state').getAttribute('data-state'), 'live');
    await screenshot(page, 'fault-broker-down');
  } finally {
    await startBrokerApp();
  }
  await page.locator('#broker-state[data-state="up"]').waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('#banner').isHidden(), true);
  await screenshot(page, 'fault-broker-recovered');
  assert.deepEqual(errors, []);
  await page.context().close();
});
