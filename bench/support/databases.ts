/**
 * Throw-away PostgreSQL databases for the benchmarks, created on a server (`postgres://root@127.0.0.1:5432`
 * by default) and dropped `WITH (FORCE)` at the end, whatever is still connected.
 */
import pg from 'pg';
import { flag, url } from './options.ts';

/** The --pg-url option of the benchmarks that make databases. */
export const PG_SERVER_OPTION = flag('pg-url', 'postgres://root@127.0.0.1:5432', url, 'PostgreSQL server', {
  arg: '<url>',
});

/** One connection to `url` for `action`, closed after it. */
export async function withClient<T>(url: string, action: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await action(client);
  } finally {
    await client.end();
  }
}

/** Creates database `name` on the server at `serverUrl`; resolves with its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  await withClient(`${serverUrl}/postgres`, (client) =>
    client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`),
  );
  return `${serverUrl}/${name}`;
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(`${serverUrl}/postgres`, (client) =>
    client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  );
}
