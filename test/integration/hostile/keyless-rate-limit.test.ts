/**
 * Hostile (issue 17, item 2): 20,000 keyless requests to an unknown route, at 1,700 req/s, each became an
 * audit row. Requests without a valid key — none, an unknown one, or to a route that does not exist — are
 * now limited per client address (RATE_LIMIT_KEYLESS_PER_MINUTE), refused with 429 RATE_LIMITED in the
 * API's error format, and counted in telemetry_http_rate_limited_total{by="address"}; traffic with a valid
 * key, and the probes, are not limited by it.
 *
 * Each row sends from its own client address (inject's remoteAddress), so rows do not share a budget.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { RATE_LIMITED_METRIC } from '../../../src/http/plugins/rate-limit.ts';
import { build } from '../../helper.ts';
import { type Row, rowTable } from '../../support/row-table.ts';

const LIMIT = 5;
const { app, keys } = await build({ after }, { RATE_LIMIT_KEYLESS_PER_MINUTE: String(LIMIT) });

let scrapes = 0;
/** A scrape is a keyless request too: each comes from its own address, so none spends a row's budget. */
async function refused(by: 'address' | 'key'): Promise<number> {
  scrapes += 1;
  const scrape = await app.inject({ url: '/metrics/prometheus', remoteAddress: `192.0.2.${scrapes}` });
  const text = scrape.body;
  const match = new RegExp(`^${RATE_LIMITED_METRIC}\\{by="${by}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(match, `${RATE_LIMITED_METRIC}{by="${by}"} is exposed`);
  return Number(match[1]);
}

type Request = { url: string; key?: 'none' | 'unknown' | 'reader' };

function send(address: string, request: Request) {
  const headers: Record<string, string> = { 'user-agent': 'x'.repeat(500) };
  if (request.key === 'unknown') headers['x-api-key'] = `tb_${'A'.repeat(43)}`;
  if (request.key === 'reader') headers['x-api-key'] = keys.reader;
  return app.inject({ url: request.url, headers, remoteAddress: address });
}

interface LimitRow extends Row {
  /** What the flood sends: LIMIT of them pass, the next is refused. */
  flood: Request;
  /** The status the flood's first LIMIT requests get. */
  before: number;
  /** Sent from the same address once it is limited, with the status it must still get. */
  afterwards?: { request: Request; status: number };
}

const rows: LimitRow[] = [
  {
    name: "the issue's case: keyless requests to an unknown route get 429 after the limit",
    flood: { url: '/no-such-route' },
    before: 404,
  },
  {
    name: 'no x-api-key on a route that needs one: 401 up to the limit, then 429',
    flood: { url: '/models' },
    before: 401,
  },
  {
    name: 'an unknown key is keyless too: 401 up to the limit, then 429',
    flood: { url: '/models', key: 'unknown' },
    before: 401,
  },
  {
    name: 'a limited address with a valid key is not limited: 200',
    flood: { url: '/no-such-route' },
    before: 404,
    afterwards: { request: { url: '/models', key: 'reader' }, status: 200 },
  },
  {
    name: 'a limited address can still be probed: /livez and /readyz 200',
    flood: { url: '/no-such-route' },
    before: 404,
    afterwards: { request: { url: '/livez' }, status: 200 },
  },
];

let address = 0;
rowTable('keyless rate limit per client address', rows, async (row) => {
  address += 1;
  const client = `203.0.113.${address}`;
  const refusedBefore = await refused('address');
  for (let i = 0; i < LIMIT; i++) {
    assert.equal((await send(client, row.flood)).statusCode, row.before, `request ${i + 1} passes`);
  }
  const limited = await send(client, row.flood);
  assert.equal(limited.statusCode, 429);
  assert.equal(limited.json().error.code, 'RATE_LIMITED');
  assert.match(limited.json().error.message, /rate limit of 5 requests per minute per client address/);
  assert.ok(Number(limited.headers['retry-after']) > 0, 'retry-after is set');
  assert.equal(await refused('address'), refusedBefore + 1, 'the refusal is counted');
  // Another address has its own budget.
  assert.equal((await send(`198.51.100.${address}`, row.flood)).statusCode, row.before);
  if (row.afterwards !== undefined) {
    assert.equal((await send(client, row.afterwards.request)).statusCode, row.afterwards.status);
    if (row.afterwards.request.url === '/livez') {
      assert.equal((await send(client, { url: '/readyz' })).statusCode, 200);
    }
  }
  assert.equal(await refused('key'), 0, 'no keyed refusal');
});
