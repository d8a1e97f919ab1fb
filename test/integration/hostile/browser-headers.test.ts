/**
 * Hostile (issue 17, item 10): /dashboard sent no Content-Security-Policy, no X-Frame-Options or
 * frame-ancestors and no Referrer-Policy: a page that holds a reader key (and, for a replay, an admin
 * key) could be framed and clickjacked, and would run whatever script an injection got into it. Now every
 * dashboard route sends them (@fastify/helmet); the page keeps working under them, which
 * test/integration/dashboard.test.ts checks in Chromium, failing on any CSP violation.
 *
 * One row per dashboard resource: the headers it must carry.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { build } from '../../helper.ts';
import { type Row, rowTable } from '../../support/row-table.ts';

const { app } = await build({ after });

interface HeaderRow extends Row {
  url: string;
  contentType: RegExp;
}

const rows: HeaderRow[] = [
  { name: 'the page, /dashboard', url: '/dashboard', contentType: /^text\/html/ },
  { name: 'its script', url: '/dashboard/assets/dashboard.js', contentType: /javascript/ },
  { name: 'its style sheet', url: '/dashboard/assets/dashboard.css', contentType: /^text\/css/ },
  { name: 'the chart library', url: '/dashboard/vendor/uPlot.iife.min.js', contentType: /javascript/ },
];

rowTable('browser hardening headers of the dashboard', rows, async (row) => {
  const response = await app.inject({ url: row.url });
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers['content-type']), row.contentType);
  const csp = String(response.headers['content-security-policy'] ?? '');
  const directives = new Map(
    csp.split(';').map((part) => {
      const [name = '', ...sources] = part.trim().split(/\s+/);
      return [name, sources] as const;
    }),
  );
  assert.deepEqual(directives.get('default-src'), ["'none'"], csp);
  assert.deepEqual(directives.get('script-src'), ["'self'"], 'scripts only from this origin, none inline');
  assert.deepEqual(directives.get('style-src'), ["'self'"], 'no inline style');
  assert.deepEqual(directives.get('connect-src'), ["'self'"], 'data only from this origin');
  assert.deepEqual(directives.get('frame-ancestors'), ["'none'"], 'never framed');
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(response.headers['x-frame-options'], 'DENY');
  assert.equal(response.headers['referrer-policy'], 'no-referrer');
  assert.equal(response.headers['x-content-type-options'], 'nosniff');
});
