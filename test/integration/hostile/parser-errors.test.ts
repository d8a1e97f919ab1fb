/**
 * Hostile (issue 17, item 8): what Node's HTTP parser refuses — unknown methods, conflicting or negative
 * content-length, bare LF line endings, oversized headers — got Fastify's generic body, and CONNECT got
 * no answer at all. Now each is answered in the API's `{"error":{"code",…}}` format, closed, and counted
 * by reason in telemetry_http_client_errors_total.
 *
 * One row per request, sent over a raw socket (no client library would send it).
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after } from 'node:test';
import { CLIENT_ERRORS_METRIC, type ClientErrorReason } from '../../../src/http/client-errors.ts';
import { build } from '../../helper.ts';
import { rawExchange } from '../../support/raw-http.ts';
import { type Row, rowTable } from '../../support/row-table.ts';

const { app } = await build({ after });
await app.listen({ host: '127.0.0.1', port: 0 });
const { port } = app.server.address() as AddressInfo;

async function counted(reason: ClientErrorReason): Promise<number> {
  const text = (await app.inject({ url: '/metrics/prometheus' })).body;
  const match = new RegExp(`^${CLIENT_ERRORS_METRIC}\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(match, `${CLIENT_ERRORS_METRIC}{reason="${reason}"} is exposed`);
  return Number(match[1]);
}

interface ParserRow extends Row {
  request: string;
  status: number;
  code: string;
  reason: ClientErrorReason;
}

const rows: ParserRow[] = [
  {
    name: 'an unknown method (FOO): 400 MALFORMED_REQUEST',
    request: 'FOO /models HTTP/1.1\r\nhost: api\r\n\r\n',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'invalid_method',
  },
  {
    name: 'two content-length headers that disagree: 400',
    request: 'POST /models HTTP/1.1\r\nhost: api\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'content_length',
  },
  {
    name: 'a negative content-length: 400',
    request: 'POST /models HTTP/1.1\r\nhost: api\r\ncontent-length: -1\r\n\r\n',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'content_length',
  },
  {
    name: 'content-length with transfer-encoding (request smuggling): 400',
    request:
      'POST /models HTTP/1.1\r\nhost: api\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'content_length',
  },
  {
    name: 'bare LF line endings throughout: 400',
    request: 'GET /models HTTP/1.1\nhost: api\n\n',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'line_ending',
  },
  {
    name: 'a bare LF inside the headers: 400',
    request: 'GET /models HTTP/1.1\r\nhost: api\nx-other: 1\r\n\r\n',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'line_ending',
  },
  {
    name: 'headers over 16 KiB: 431 HEADERS_TOO_LARGE',
    request: `GET /models HTTP/1.1\r\nhost: api\r\nuser-agent: ${'a'.repeat(20_000)}\r\n\r\n`,
    status: 431,
    code: 'HEADERS_TOO_LARGE',
    reason: 'header_overflow',
  },
  {
    name: 'CONNECT: answered 405 METHOD_NOT_ALLOWED, not left hanging',
    request: 'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n',
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
    reason: 'connect',
  },
  {
    name: 'bytes that are not HTTP: 400',
    request: '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003 TLS hello\r\n\r\n',
    status: 400,
    code: 'MALFORMED_REQUEST',
    reason: 'invalid_method',
  },
];

rowTable('requests the HTTP parser refuses', rows, async (row) => {
  const before = await counted(row.reason);
  const exchange = await rawExchange(port, row.request, { timeoutMs: 5000 });
  assert.equal(exchange.status, row.status, exchange.response.slice(0, 300));
  assert.match(exchange.response, /\r\ncontent-type: application\/json; charset=utf-8\r\n/);
  const body = exchange.body as { error: { code: string; message: string; field: string } };
  assert.equal(body.error.code, row.code);
  assert.equal(body.error.field, 'request');
  assert.ok(body.error.message.length > 0);
  assert.ok(exchange.closedAfterMs !== undefined, 'the server closed the connection');
  assert.equal(await counted(row.reason), before + 1, `counted as ${row.reason}`);
});
