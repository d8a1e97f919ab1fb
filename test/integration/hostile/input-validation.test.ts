/**
 * Hostile (issue 17, item 3, and the `__proto__` body): input that passed validation used to reach
 * PostgreSQL and come back as a 500 — a NUL in a text filter, a date in year 0, a cursor decoding to
 * 30 February. Validation now refuses, at the edge, every control character in every text of a request
 * (query, path, body; values and keys), every date-time PostgreSQL would refuse, and every cursor that
 * decodes to one. One row per input: the request, and the field the 400 must name.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { build, modelBody } from '../../helper.ts';

const { app, keys } = await build({ after });

/** A cursor as the API encodes them (base64url JSON), with whatever inside. */
const cursor = (payload: unknown) => Buffer.from(JSON.stringify(payload)).toString('base64url');
const UUID = '00000000-0000-4000-8000-000000000000';
const NUL = '%00';

interface Row {
  name: string;
  role: 'reader' | 'writer' | 'admin';
  method?: 'GET' | 'POST' | 'PATCH';
  url: string;
  payload?: unknown;
  /** Raw JSON text sent as the body (for what JSON.stringify will not write). */
  rawBody?: string;
  field: string;
  /** What the message must say, when it matters. */
  message?: RegExp;
}

const nulIn = (role: Row['role'], path: string, params: string[]): Row[] =>
  params.map((param) => ({
    name: `NUL in ${param} of GET ${path}`,
    role,
    url: `${path}${path.includes('?') ? '&' : '?'}${param}=a${NUL}b`,
    field: param,
    message: /control characters/,
  }));

const rows: Row[] = [
  // Item 3's cases, as found.
  ...nulIn('admin', '/dlq', ['event_type', 'model_id', 'error_type', 'queue', 'event_id']),
  ...['event_type', 'model_id', 'error_type', 'queue', 'event_id'].map(
    (name): Row => ({
      name: `NUL in filter.${name} of POST /dlq/replay`,
      role: 'admin',
      method: 'POST',
      url: '/dlq/replay',
      payload: { filter: { [name]: 'a\u0000b' }, dry_run: true },
      field: `filter.${name}`,
    }),
  ),
  {
    name: 'a tab and an ESC in a replay filter',
    role: 'admin',
    method: 'POST',
    url: '/dlq/replay',
    payload: { filter: { queue: 'audit.trail\t\u001b[31m' } },
    field: 'filter.queue',
  },
  ...nulIn('reader', '/metrics', ['route', 'vendor_id', 'from']),
  { name: 'a DEL in /metrics?route=', role: 'reader', url: '/metrics?route=/models%7F', field: 'route' },
  { name: 'from in year 0 on /audit', role: 'admin', url: '/audit?from=0000-01-01T00:00:00Z', field: 'from' },
  { name: 'to in year 0 on /audit', role: 'admin', url: '/audit?to=0000-06-01T00:00:00Z', field: 'to' },
  {
    name: 'from in year 1 with an offset that puts it in year 0 (UTC)',
    role: 'admin',
    url: '/audit?from=0001-01-01T00:00:00%2B05:00',
    field: 'from',
  },
  {
    name: 'a negative year on /audit',
    role: 'admin',
    url: '/audit?from=-000001-01-01T00:00:00Z',
    field: 'from',
  },
  { name: '30 February on /audit', role: 'admin', url: '/audit?to=2025-02-30T00:00:00Z', field: 'to' },
  {
    name: 'an /audit cursor on 30 February',
    role: 'admin',
    url: `/audit?cursor=${cursor({ t: '2025-02-30T10:00:00.000000Z', i: 5 })}`,
    field: 'cursor',
  },
  {
    name: 'an /audit cursor in year 0',
    role: 'admin',
    url: `/audit?cursor=${cursor({ t: '0000-01-01T00:00:00.000000Z', i: 5 })}`,
    field: 'cursor',
  },
  {
    name: 'a /dlq cursor on 30 February',
    role: 'admin',
    url: `/dlq?cursor=${cursor({ t: '2025-02-30T10:00:00.123+00:00', id: UUID })}`,
    field: 'cursor',
  },
  {
    name: 'a /dlq cursor in year 0',
    role: 'admin',
    url: `/dlq?cursor=${cursor({ t: '0000-01-01T00:00:00+00:00', id: UUID })}`,
    field: 'cursor',
  },
  {
    name: 'a /models?sort=created_at cursor on 30 February',
    role: 'reader',
    url: `/models?sort=created_at&cursor=${cursor({ s: 'created_at', v: '2025-02-30T00:00:00.000Z', id: 'a' })}`,
    field: 'cursor',
  },
  {
    name: 'a /models?sort=-created_at cursor in year 0',
    role: 'reader',
    url: `/models?sort=-created_at&cursor=${cursor({ s: '-created_at', v: '0000-01-01T00:00:00.000Z', id: 'a' })}`,
    field: 'cursor',
  },
  // The sweep: every other route's text and date inputs.
  ...nulIn('admin', '/dlq', ['from', 'to', 'cursor']),
  { name: '/dlq from in year 0', role: 'admin', url: '/dlq?from=0000-01-01T00:00:00Z', field: 'from' },
  {
    name: 'POST /dlq/replay filter.to on 30 February',
    role: 'admin',
    method: 'POST',
    url: '/dlq/replay',
    payload: { filter: { to: '2025-02-30T00:00:00Z' } },
    field: 'filter.to',
  },
  ...nulIn('admin', '/audit', ['model_id', 'correlation_id', 'from', 'cursor']),
  ...nulIn('reader', '/models', ['vendor_id', 'cursor', 'sort']),
  ...nulIn('reader', '/analytics/models/popular', ['from', 'to', 'vendor_id']),
  ...nulIn('reader', '/analytics/filters', ['from']),
  ...nulIn('reader', '/telemetry/ledger', ['from', 'to']),
  {
    name: '/analytics/filters from in year 0',
    role: 'reader',
    url: '/analytics/filters?from=0000-01-01',
    field: 'from',
  },
  { name: 'NUL in GET /models/:model_id', role: 'reader', url: `/models/a${NUL}b`, field: 'model_id' },
  {
    name: 'NUL in GET /analytics/models/:model_id',
    role: 'reader',
    url: `/analytics/models/a${NUL}b`,
    field: 'model_id',
  },
  {
    name: 'NUL in GET /schemas/events/:event_type',
    role: 'reader',
    url: `/schemas/events/a${NUL}`,
    field: 'event_type',
  },
  {
    name: 'NUL in POST /models vendor_id',
    role: 'writer',
    method: 'POST',
    url: '/models',
    payload: modelBody({ vendor_id: 'Open\u0000AI' }),
    field: 'vendor_id',
  },
  {
    name: 'NUL in an unknown key of POST /models',
    role: 'writer',
    method: 'POST',
    url: '/models',
    payload: { ...modelBody(), 'x\u0000': 1 },
    field: 'x\u0000',
  },
  {
    name: 'NUL in PATCH /models/:model_id vendor_id',
    role: 'writer',
    method: 'PATCH',
    url: '/models/some-model',
    payload: { vendor_id: '\u0000' },
    field: 'vendor_id',
  },
  // A body with __proto__: say what was refused.
  {
    name: 'a body with __proto__',
    role: 'writer',
    method: 'POST',
    url: '/models',
    rawBody: '{"model_id":"m","__proto__":{"admin":true}}',
    field: 'body',
    message: /__proto__/,
  },
  {
    name: 'a body with constructor.prototype',
    role: 'admin',
    method: 'POST',
    url: '/dlq/replay',
    rawBody: '{"filter":{},"constructor":{"prototype":{"x":1}}}',
    field: 'body',
    message: /prototype/,
  },
];

describe('hostile input: a 400 naming the field, never a 500', () => {
  for (const row of rows) {
    test(row.name, async () => {
      const response = await app.inject({
        method: row.method ?? 'GET',
        url: row.url,
        headers: {
          'x-api-key': keys[row.role],
          ...(row.rawBody !== undefined || row.payload !== undefined
            ? { 'content-type': 'application/json' }
            : {}),
        },
        ...(row.rawBody !== undefined ? { payload: row.rawBody } : {}),
        ...(row.payload !== undefined ? { payload: JSON.stringify(row.payload) } : {}),
      });
      assert.equal(response.statusCode, 400, response.body);
      const { error } = response.json();
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.equal(error.field, row.field, response.body);
      if (row.message !== undefined) assert.match(error.message, row.message);
    });
  }
});

describe('what still passes', () => {
  const fine: Array<[string, Row['role'], string]> = [
    ['a date in year 1', 'admin', '/audit?from=0001-01-01T00:00:00Z'],
    ['29 February of a leap year', 'admin', '/audit?to=2024-02-29T00:00:00Z'],
    ['the last second of year 9999', 'admin', '/dlq?to=9999-12-31T23:59:59Z'],
    ['non-ASCII text (not a control character)', 'admin', '/dlq?queue=%C3%A9t%C3%A9'],
  ];
  for (const [name, role, url] of fine) {
    test(name, async () => {
      const response = await app.inject({ url, headers: { 'x-api-key': keys[role] } });
      assert.equal(response.statusCode, 200, response.body);
    });
  }
});
