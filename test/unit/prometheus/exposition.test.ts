/**
 * Content negotiation of the Prometheus exposition (who gets the exposition on GET /metrics, who goes on
 * to the JSON route), the OpenMetrics rendering, and the scrape token check.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import {
  chooseExpositionFormat,
  negotiateExposition,
  renderExposition,
  scrapeAllowed,
} from '../../../src/prometheus/exposition.ts';

/** What Prometheus 2.42 sends (scrape.go, acceptHeader). */
const PROMETHEUS_ACCEPT =
  'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

describe('negotiateExposition (GET /metrics)', () => {
  const cases: Array<[string | undefined, string]> = [
    [PROMETHEUS_ACCEPT, 'openmetrics'],
    ['text/plain;version=0.0.4;q=0.5,*/*;q=0.1', 'prometheus'],
    ['text/plain', 'prometheus'],
    ['text/*', 'prometheus'],
    ['application/openmetrics-text; version=1.0.0', 'openmetrics'],
    ['application/openmetrics-text;version=0.0.1', 'openmetrics'],
    ['text/plain;q=0.9, application/openmetrics-text;q=0.5', 'prometheus'],
    // A client that prefers JSON, or states no preference, goes to the JSON route.
    [undefined, 'json'],
    ['', 'json'],
    ['*/*', 'json'],
    ['application/json', 'json'],
    ['application/json, text/plain;q=0.9', 'json'],
    ['text/plain;q=0.5, application/json', 'json'],
    ['text/plain, application/json', 'json'],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'json'],
    ['application/*;q=0.9, text/plain;q=0.8', 'json'],
    ['text/plain;q=0', 'json'],
    ['text/plain;q=0.3, */*;q=0.5', 'json'],
    ['garbage', 'json'],
  ];
  for (const [accept, expected] of cases) {
    test(`${JSON.stringify(accept)} → ${expected}`, () => {
      assert.equal(negotiateExposition(accept), expected);
    });
  }
});

describe('chooseExpositionFormat (GET /metrics/prometheus)', () => {
  test('OpenMetrics only when preferred; the Prometheus text format otherwise', () => {
    assert.equal(chooseExpositionFormat(PROMETHEUS_ACCEPT), 'openmetrics');
    assert.equal(chooseExpositionFormat(undefined), 'prometheus');
    assert.equal(chooseExpositionFormat('*/*'), 'prometheus');
    assert.equal(chooseExpositionFormat('application/json'), 'prometheus');
    assert.equal(chooseExpositionFormat('text/plain'), 'prometheus');
    assert.equal(chooseExpositionFormat('application/openmetrics-text'), 'openmetrics');
  });
});

describe('renderExposition', () => {
  const registry = new Registry();
  const counter = new Counter({ name: 'demo_requests_total', help: 'Demo', registers: [registry] });
  const histogram = new Histogram({
    name: 'demo_seconds',
    help: 'Demo',
    labelNames: ['route'],
    buckets: [0.1, 1],
    registers: [registry],
  });
  counter.inc(3);
  histogram.observe({ route: '/a' }, 0.5);

  test('OpenMetrics: counter family without _total, samples with it, # EOF at the end', async () => {
    const { contentType, body } = await renderExposition(registry, 'openmetrics');
    assert.match(contentType, /^application\/openmetrics-text; version=1\.0\.0/);
    assert.match(body, /^# TYPE demo_requests counter$/m);
    assert.match(body, /^demo_requests_total 3$/m);
    assert.match(body, /^demo_seconds_bucket\{le="1",route="\/a"\} 1$/m);
    assert.ok(body.endsWith('\n# EOF\n'));
  });

  test('rendering OpenMetrics leaves the Prometheus text unchanged (no renamed counters)', async () => {
    await renderExposition(registry, 'openmetrics');
    const { contentType, body } = await renderExposition(registry, 'prometheus');
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    assert.match(body, /^# TYPE demo_requests_total counter$/m);
    assert.match(body, /^demo_requests_total 3$/m);
    assert.doesNotMatch(body, /# EOF/);
  });
});

describe('scrapeAllowed', () => {
  const token = 'abcdefghijklmnop0123';
  test('no token configured: open', () => {
    assert.equal(scrapeAllowed(undefined, ''), true);
    assert.equal(scrapeAllowed('Bearer whatever', ''), true);
  });
  test('a token configured: only that bearer token', () => {
    assert.equal(scrapeAllowed(`Bearer ${token}`, token), true);
    assert.equal(scrapeAllowed(`bearer ${token}`, token), true);
    assert.equal(scrapeAllowed(undefined, token), false);
    assert.equal(scrapeAllowed(token, token), false);
    assert.equal(scrapeAllowed(`Basic ${token}`, token), false);
    assert.equal(scrapeAllowed(`Bearer ${token}x`, token), false);
    assert.equal(scrapeAllowed(`Bearer ${token.slice(1)}`, token), false);
    assert.equal(scrapeAllowed('Bearer ', token), false);
  });
});
