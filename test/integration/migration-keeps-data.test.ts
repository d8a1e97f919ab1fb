/**
 * Migrating a database filled by an earlier release keeps its data: the fixture (test/fixtures/migration,
 * built by that release through its real paths) is restored, counted, migrated with the current
 * migrations, and counted again; then the current code must answer GET /metrics and GET /analytics as
 * the release did, and `audit verify` must pass over the same records.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import pg from 'pg';
import { loadConfig } from '../../src/config.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import { migrate } from '../../src/db/migrate.ts';
import { buildApp } from '../../src/http/app.ts';
import { createServices } from '../../src/services.ts';
import { createEmptyDatabase } from '../helper.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/migration/', import.meta.url));
const release = JSON.parse(readFileSync(`${FIXTURE}release.json`, 'utf8')) as {
  release: string;
  counts: Record<string, number>;
  audit: { records: number };
  answers: Record<string, unknown>;
};

/**
 * How to count, after the migration, what the release kept in each table: the same table unless a
 * migration reshaped it.
 */
const COUNT_AFTER: Record<string, string> = {};

// Closed before the database is dropped (hooks run in the order they were registered).
const closers: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const close of closers) await close();
});
const databaseUrl = await createEmptyDatabase({ after });
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
closers.push(() => pool.end());

/** Without what moves with the clock (per_second), and the `truncated` marker the release had not. */
function withoutRate(answer: unknown): unknown {
  const { truncated, ...report } = answer as {
    requests?: { per_second?: unknown };
    truncated?: Record<string, number>;
  };
  if (report.requests !== undefined) report.requests.per_second = undefined;
  if (truncated !== undefined)
    assert.deepEqual(truncated, {}, 'no list of the fixture is long enough to be cut');
  return report;
}

async function count(sql: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(sql);
  return Number(rows[0]?.n);
}

test(`a database of release ${release.release}: migrated, every row kept, the same answers`, async () => {
  execFileSync('psql', ['--quiet', '--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '--dbname', databaseUrl], {
    input: gunzipSync(readFileSync(`${FIXTURE}release.sql.gz`)),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  for (const [table, rows] of Object.entries(release.counts)) {
    assert.equal(await count(`SELECT count(*) AS n FROM ${table}`), rows, `${table} as restored`);
  }

  const applied = await migrate(databaseUrl);
  assert.ok(applied.length > 0, 'the current code has migrations the release had not');

  for (const [table, rows] of Object.entries(release.counts)) {
    const sql = COUNT_AFTER[table] ?? `SELECT count(*) AS n FROM ${table}`;
    assert.equal(await count(sql), rows, `${table} after ${applied.join(', ')}`);
  }
  const verification = await verifyAuditTrail(pool);
  assert.ok(verification.ok, JSON.stringify(verification.broken));
  assert.equal(verification.records, release.audit.records);

  // The current code reads the migrated data as the release read it.
  const config = loadConfig({ LOG_LEVEL: 'silent', DATABASE_URL: databaseUrl, TELEMETRY_ENABLED: 'false' });
  const services = createServices(config);
  const app = await buildApp(services, { rateLimitPerMinute: 0, metricsRollupRetentionDays: 400 });
  closers.unshift(
    () => app.close(),
    () => services.close(),
  );
  const key = (await services.apiKeys.create('migration-test', 'reader')).key;
  for (const [url, answer] of Object.entries(release.answers)) {
    const response = await app.inject({ url, headers: { 'x-api-key': key } });
    assert.equal(response.statusCode, 200, `${url}: ${response.body}`);
    assert.deepEqual(withoutRate(response.json()), withoutRate(answer), url);
  }
});
