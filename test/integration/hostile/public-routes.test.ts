/**
 * Hostile (issue 17, "Also"): what a client without a key can read. docs/reference/security.md lists the
 * routes public by default — the probes, /health, the Prometheus exposition (/metrics/prometheus, and
 * GET /metrics asking for text) and the API's description — and how to close them: METRICS_SCRAPE_TOKEN
 * closes the exposition to anyone without the bearer token. Each row is a request without a key, against
 * the default configuration and against one with a scrape token, and the status it must get; everything
 * else (JSON metrics, the dashboard's data, every model route) needs a key either way.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { build } from '../../helper.ts';
import { type Row, rowTable } from '../../support/row-table.ts';

const TOKEN = 'scrape-token-for-the-hostile-suite';
const open = await build({ after });
const closed = await build({ after }, { METRICS_SCRAPE_TOKEN: TOKEN });

interface PublicRow extends Row {
  url: string;
  headers?: Record<string, string>;
  /** The status without a key, by default. */
  byDefault: number;
  /** The status without a key, with METRICS_SCRAPE_TOKEN set. */
  withToken: number;
}

const TEXT = { accept: 'text/plain' };
const rows: PublicRow[] = [
  { name: 'GET /livez: public (a probe)', url: '/livez', byDefault: 200, withToken: 200 },
  { name: 'GET /readyz: public (a probe)', url: '/readyz', byDefault: 200, withToken: 200 },
  { name: 'GET /health: public (close it at the proxy)', url: '/health', byDefault: 200, withToken: 200 },
  {
    name: 'GET /metrics/prometheus: public, closed by METRICS_SCRAPE_TOKEN',
    url: '/metrics/prometheus',
    byDefault: 200,
    withToken: 401,
  },
  {
    name: 'GET /metrics with Accept: text/plain: public, closed by METRICS_SCRAPE_TOKEN',
    url: '/metrics',
    headers: TEXT,
    byDefault: 200,
    withToken: 401,
  },
  {
    name: 'GET /metrics/prometheus with the bearer token: served',
    url: '/metrics/prometheus',
    headers: { authorization: `Bearer ${TOKEN}` },
    byDefault: 200,
    withToken: 200,
  },
  {
    name: 'GET /metrics/prometheus with a wrong bearer token: refused where a token is set',
    url: '/metrics/prometheus',
    headers: { authorization: `Bearer ${TOKEN}x` },
    byDefault: 200,
    withToken: 401,
  },
  {
    name: 'GET /metrics as JSON: always needs a reader key',
    url: '/metrics',
    headers: { accept: 'application/json' },
    byDefault: 401,
    withToken: 401,
  },
  { name: 'GET /docs/json: public (what the API is)', url: '/docs/json', byDefault: 200, withToken: 200 },
  {
    name: 'GET /dashboard/stream: needs a reader key',
    url: '/dashboard/stream',
    byDefault: 401,
    withToken: 401,
  },
  { name: 'GET /models: needs a key', url: '/models', byDefault: 401, withToken: 401 },
  { name: 'GET /audit/keyless: needs a key', url: '/audit/keyless', byDefault: 401, withToken: 401 },
];

rowTable('what is public without a key', rows, async (row) => {
  const byDefault = await open.app.inject({ url: row.url, headers: row.headers });
  assert.equal(byDefault.statusCode, row.byDefault, `by default: ${byDefault.body.slice(0, 200)}`);
  const withToken = await closed.app.inject({ url: row.url, headers: row.headers });
  assert.equal(withToken.statusCode, row.withToken, `with a scrape token: ${withToken.body.slice(0, 200)}`);
  if (withToken.statusCode === 401)
    assert.ok(typeof withToken.json().error?.code === 'string', 'our error format');
});
