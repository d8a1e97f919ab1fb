/**
 * docker-compose.cluster.yml (the cluster deployment of docs/guides/scaling-out.md) stays in step with
 * the code: three RabbitMQ nodes that form one cluster (one cookie, each named in the peer-discovery
 * configuration), and API instances and workers whose environment `loadConfig` accepts, listing every
 * node once, each with a data directory of its own.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

interface Service {
  hostname?: string;
  image?: string;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
}

const compose = parse(read('docker-compose.cluster.yml'), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const services = Object.entries(compose.services);
const rabbits = services.filter(([, service]) => service.image?.startsWith('rabbitmq:'));
const apps = services.filter(([name]) => /^(api|worker)-\d+$/.test(name));

test('three RabbitMQ nodes with one cookie, each named in the peer discovery configuration', () => {
  assert.equal(rabbits.length, 3);
  const cookies = new Set(rabbits.map(([, service]) => service.environment?.RABBITMQ_ERLANG_COOKIE));
  assert.equal(cookies.size, 1);
  const discovered = [
    ...read('deploy/rabbitmq/cluster.conf').matchAll(/classic_config\.nodes\.\d+ = rabbit@(\S+)/g),
  ].map((match) => match[1]);
  assert.deepEqual(discovered.sort(), rabbits.map(([, service]) => service.hostname).sort());
  for (const [name, service] of rabbits) {
    assert.equal(service.hostname, name);
    assert.ok(
      service.volumes?.some((volume) => volume.endsWith('/etc/rabbitmq/conf.d/20-cluster.conf:ro')),
      name,
    );
    assert.ok(
      service.volumes?.some((volume) => volume.startsWith(`${name}-data:`)),
      `${name} keeps its data`,
    );
  }
});

test('every API instance and worker lists each node once, and its configuration loads', () => {
  assert.ok(apps.filter(([name]) => name.startsWith('api-')).length >= 2, 'several API instances');
  assert.ok(apps.filter(([name]) => name.startsWith('worker-')).length >= 2, 'a standby worker');
  const { RABBITMQ_DEFAULT_USER: user, RABBITMQ_DEFAULT_PASS: password } = rabbits[0]?.[1].environment ?? {};
  for (const [name, service] of apps) {
    const config = loadConfig(service.environment);
    const hosts = (urls: string[]) => urls.map((url) => new URL(url).hostname).sort();
    const nodes = rabbits.map(([node]) => node).sort();
    assert.deepEqual(hosts(config.rabbitmqUrls), nodes, `${name}: RABBITMQ_URL`);
    assert.deepEqual(hosts(config.rabbitmqManagementUrls), nodes, `${name}: RABBITMQ_MANAGEMENT_URL`);
    for (const url of config.rabbitmqUrls.map((entry) => new URL(entry))) {
      assert.deepEqual([url.username, url.password], [user, password], `${name}: the broker's user`);
    }
    assert.equal(config.queueLeaderLocator, 'balanced');
    assert.equal(config.host, '0.0.0.0');
  }
});

test('each API instance and worker has a data directory (spool, error log) of its own', () => {
  const mounted = apps.map(([name, service]) => {
    const dataDir = service.environment?.DATA_DIR;
    const volume = service.volumes?.find((entry) => entry.endsWith(`:${dataDir}`));
    assert.ok(volume, `${name} mounts a volume at DATA_DIR`);
    return volume.split(':')[0] as string;
  });
  assert.equal(new Set(mounted).size, apps.length);
  for (const volume of mounted) assert.ok(Object.hasOwn(compose.volumes, volume), volume);
  const published = apps.flatMap(([, service]) => service.ports ?? []).map((port) => port.split(':')[0]);
  assert.equal(new Set(published).size, published.length, 'each API instance on a port of its own');
});
