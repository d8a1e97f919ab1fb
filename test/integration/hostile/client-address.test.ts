/**
 * Personal data (issue 17, "Also"): every event carries the client's IP address. EVENT_IP_ADDRESS chooses
 * what is stored — as received, truncated to its network, or an HMAC — and it is applied where the event
 * is built, so the spool (what every consumer reads) never holds more. One row per mode and address: what
 * the spool must hold, and what it must not.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { build } from '../../helper.ts';
import { waitUntil } from '../../support/wait-until.ts';

const HASH_KEY = 'k'.repeat(40);
const systems = {
  full: await build({ after }, { EVENT_IP_ADDRESS: 'full' }),
  truncated: await build({ after }, { EVENT_IP_ADDRESS: 'truncated' }),
  hashed: await build({ after }, { EVENT_IP_ADDRESS: 'hashed', EVENT_IP_HASH_KEY: HASH_KEY }),
};

interface Row {
  mode: keyof typeof systems;
  address: string;
  /** What the event's ip_address must be (a pattern for the hash). */
  stored: string | RegExp;
}

const rows: Row[] = [
  { mode: 'full', address: '203.0.113.77', stored: '203.0.113.77' },
  { mode: 'truncated', address: '203.0.113.77', stored: '203.0.113.0' },
  { mode: 'truncated', address: '2001:db8:aa:bb:cc:dd:ee:ff', stored: '2001:db8:aa::' },
  { mode: 'truncated', address: '::ffff:198.51.100.9', stored: '::ffff:198.51.100.0' },
  { mode: 'hashed', address: '203.0.113.77', stored: /^hmac:[A-Za-z0-9_-]{32}$/ },
  { mode: 'hashed', address: '2001:db8:aa:bb:cc:dd:ee:ff', stored: /^hmac:[A-Za-z0-9_-]{32}$/ },
];

/** The ip_address of every event in the spool files under `directory`. */
function spooledAddresses(directory: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(directory)) {
    const path = join(directory, entry);
    if (statSync(path).isDirectory()) found.push(...spooledAddresses(path));
    else
      for (const match of readFileSync(path, 'latin1').matchAll(/"ip_address":"([^"]*)"/g)) {
        found.push(match[1] as string);
      }
  }
  return found;
}

describe('what an event stores of the client address', () => {
  for (const row of rows) {
    test(`${row.mode}: ${row.address}`, async () => {
      const { app, keys, config } = systems[row.mode];
      const before = spooledAddresses(config.dataDir).length;
      const correlation = `ip-${Math.random().toString(36).slice(2)}`;
      const response = await app.inject({
        url: '/models',
        remoteAddress: row.address,
        headers: { 'x-api-key': keys.reader, 'x-correlation-id': correlation },
      });
      assert.equal(response.statusCode, 200);
      await waitUntil(
        'the event in the spool',
        async () => spooledAddresses(config.dataDir).length > before,
        10_000,
      );
      const stored = spooledAddresses(config.dataDir).slice(before);
      assert.equal(stored.length, 1);
      const [address] = stored as [string];
      if (typeof row.stored === 'string') assert.equal(address, row.stored);
      else assert.match(address, row.stored);
      if (row.mode !== 'full') {
        const spool = JSON.stringify(spooledAddresses(config.dataDir));
        assert.ok(!spool.includes(row.address), 'the address as received is in no spooled event');
      }
    });
  }

  test('hashed: one address, one hash; another address, another hash', async () => {
    const { app, keys, config } = systems.hashed;
    const hashes: string[] = [];
    for (const address of ['192.0.2.1', '192.0.2.1', '192.0.2.2']) {
      const before = spooledAddresses(config.dataDir).length;
      await app.inject({ url: '/models', remoteAddress: address, headers: { 'x-api-key': keys.reader } });
      await waitUntil(
        'the event in the spool',
        async () => spooledAddresses(config.dataDir).length > before,
        10_000,
      );
      hashes.push(spooledAddresses(config.dataDir).at(-1) as string);
    }
    assert.equal(hashes[0], hashes[1]);
    assert.notEqual(hashes[0], hashes[2]);
  });
});
