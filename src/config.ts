/**
 * Configuration: environment variables only, read and validated once at start-up.
 *
 * `process.env` is read nowhere else. Each variable is declared once in {@link CONFIG_VARIABLES} with its
 * default, unit and expected form; that table drives parsing, the error message for a bad value, and the
 * configuration reference (docs/reference/configuration.md; a test keeps them in step).
 *
 * A default that a component also needs when it is built without this configuration (in tests, the
 * benchmarks) is the component's: exported next to its options (`SPOOL_PUBLISHER_DEFAULTS` …) and taken
 * from there, so each number is written once.
 */

import { API_KEY_STORE_DEFAULTS } from './auth/api-key-store.ts';
import { vhostOf } from './bus/broker-connection.ts';
import { SPOOL_DEFAULTS } from './bus/spool/spool.ts';
import { SPOOL_PUBLISHER_DEFAULTS } from './bus/spool-publisher.ts';
import { DEFAULT_RETRY_DELAYS_MS } from './bus/topology.ts';
import { DEFAULT_CACHE_MAX_BYTES } from './cache-budget.ts';
import { IP_ADDRESS_MODES, type IpAddressMode } from './client-address.ts';
import { APPLIED_EVENTS_RETENTION_DEFAULTS } from './consumers/applied-events-pruner.ts';
import { CONSUMER_NAMES, type ConsumerName } from './consumers/consumer-names.ts';
import { CONSUMER_RUNTIME_DEFAULTS } from './consumers/consumer-runtime.ts';
import { ROTATING_FILE_DEFAULTS } from './consumers/logging/rotating-file.ts';
import { METRICS_PRUNER_DEFAULTS } from './consumers/metrics/metrics-pruner.ts';
import { POOL_DEFAULTS } from './db/create-pool.ts';
import { ConfigError } from './errors.ts';
import { SERVER_LIMIT_DEFAULTS, type ServerLimits } from './http/server-limits.ts';
import { LEDGER_WRITER_DEFAULTS } from './ledger/ledger-writer.ts';
import { LOG_LEVELS, type LogLevel } from './logger.ts';
import { redactCredentials } from './redact-credentials.ts';

/** The configuration, parsed. Each field's default is its variable's in {@link CONFIG_VARIABLES}. */
export interface Config {
  /** PostgreSQL connection URL. The database is created at start if it does not exist. */
  databaseUrl: string;
  /** AMQP URLs of the RabbitMQ nodes, tried in this order; one node, or every node of a cluster. */
  rabbitmqUrls: string[];
  /** Interface the HTTP server binds to. */
  host: string;
  /** TCP port of the HTTP server; 0 picks a free port. */
  port: number;
  /** pino log level. */
  logLevel: LogLevel;
  /** Maximum PostgreSQL connections in the API's pool. */
  dbPoolMax: number;
  /** Time a cached model or filter result stays valid, in milliseconds; 0 disables the cache. */
  cacheTtlMs: number;
  /**
   * Bytes the read caches of a process hold at most, together (models, filter pages, metrics periods,
   * API keys; shared out by src/cache-budget.ts).
   */
  cacheMaxBytes: number;
  /** Time to receive a whole request (headers and body), in milliseconds; 0: no limit. */
  httpRequestTimeoutMs: number;
  /** Time to receive a request's headers, in milliseconds (at most the request's). */
  httpHeadersTimeoutMs: number;
  /** Time a connection may go without traffic either way, in milliseconds; 0: no limit. */
  httpConnectionTimeoutMs: number;
  /** Time an idle keep-alive connection waits for its next request, in milliseconds. */
  httpKeepAliveTimeoutMs: number;
  /** Connections open at once per process; over it a new one is closed. 0: no cap. */
  httpMaxConnections: number;
  /** Requests allowed per API key per minute; 0 disables rate limiting. */
  rateLimitPerMinute: number;
  /** Requests without a valid API key allowed per client address per minute; 0 disables this limit. */
  rateLimitKeylessPerMinute: number;
  /** Time an API key lookup is cached in memory, in milliseconds (bounds how late a revocation bites). */
  apiKeyCacheTtlMs: number;
  /** Time allowed for a graceful shutdown before the process exits anyway, in milliseconds. */
  shutdownTimeoutMs: number;
  /** Create and print an admin API key on a start that finds no keys at all. */
  bootstrapAdminKey: boolean;
  /** Trust `X-Forwarded-For` from a reverse proxy for the client address. */
  trustProxy: boolean;
  /** What an event stores of the client's IP address: full, truncated (/24, /48) or hashed. */
  eventIpAddress: IpAddressMode;
  /** Key of the HMAC of EVENT_IP_ADDRESS=hashed; '' draws a random one per process. */
  eventIpHashKey: string;
  /** Directory for this process's durable state (the event spool); one per process. */
  dataDir: string;
  /** Publish an event for every request. Off only to measure the bus's cost. */
  telemetryEnabled: boolean;
  /** Size of the event spool above which new events are dropped (and counted), in bytes. */
  spoolMaxBytes: number;
  /** Size of one spool segment file, in bytes. */
  spoolSegmentBytes: number;
  /** Interval between fsyncs of the event spool, in milliseconds; 0 syncs every event. */
  spoolFsyncIntervalMs: number;
  /** Interval between writes of the API's loss-ledger counts to PostgreSQL, in milliseconds. */
  ledgerFlushIntervalMs: number;
  /** AMQP heartbeat interval, in seconds: a dead broker connection is detected within about twice this. */
  rabbitmqHeartbeatSeconds: number;
  /**
   * RabbitMQ management API URLs, for queue statistics in GET /health and the queues' leaders in `topology
   * show`, tried in this order; empty (`off`) uses AMQP passive declares.
   */
  rabbitmqManagementUrls: string[];
  /**
   * Members a quorum queue gets when it is created (`x-quorum-initial-group-size`); null (`broker`) leaves
   * it to the broker, which puts every queue on every node of the cluster.
   */
  quorumInitialGroupSize: number | null;
  /**
   * Where a new quorum queue's leader goes (`x-queue-leader-locator`): `balanced` spreads the leaders over
   * the nodes, `client-local` puts them on the node the declaring client is connected to, null (`broker`)
   * leaves it to the broker's `queue_leader_locator`.
   */
  queueLeaderLocator: QueueLeaderLocator | null;
  /** Events published but not yet confirmed by the broker, at most. */
  publishWindow: number;
  /** Time to wait for a broker confirm before reconnecting and resending, in milliseconds. */
  publishConfirmTimeoutMs: number;
  /** Delays of the consumers' retry ladder, in milliseconds. */
  retryDelaysMs: number[];
  /** Consumers `start` runs beside the API, and `worker` runs by default. */
  consumers: ConsumerName[];
  /** Unacknowledged deliveries per consumer. */
  consumerPrefetch: number;
  /** Messages a consumer applies in one PostgreSQL transaction, at most. */
  consumerBatchSize: number;
  /**
   * Partitions of `audit.trail` by model_id (a consistent-hash exchange into `audit.trail.p0…`); 1 is the
   * one queue. Every process of a deployment must use the same value.
   */
  auditPartitions: number;
  /** Size at which the logging consumer rotates `<DATA_DIR>/logs/errors.log`, in bytes. */
  errorLogMaxBytes: number;
  /** Rotated error log files kept besides errors.log (`errors.log.1` … `.N`). */
  errorLogMaxFiles: number;
  /** Bearer token a Prometheus scrape must present; '' (`off`) leaves the metrics open. */
  metricsScrapeToken: string;
  /** Port of `telemetry-bus worker`'s metrics endpoint (on HOST); null (`off`) serves none; 0 picks one. */
  workerMetricsPort: number | null;
  /** Days the metrics consumer keeps raw applied events (`metrics_events`) after their timestamp. */
  metricsRawRetentionDays: number;
  /** Days the metrics rollups are kept; GET /metrics refuses ranges reaching further back. */
  metricsRollupRetentionDays: number;
  /** Time between two prunings of the metrics tables, in milliseconds. */
  metricsPruneIntervalMs: number;
  /**
   * Days a consumer keeps a de-duplication record unused (a producer stream, an event id), to refuse a
   * second copy; those with a dead copy in the dead-letter archive stay until it is replayed or deleted.
   *
   */
  appliedEventsRetentionDays: number;
  /**
   * Days the audit trail keeps each client error of a request without a valid key as a record; after
   * that, only its count per day, status and error code. 0 keeps them for ever.
   * @default 30
   */
  auditKeylessRetentionDays: number;
}

/** The leader locators of RabbitMQ 3.10 quorum queues. */
export const QUEUE_LEADER_LOCATORS = ['balanced', 'client-local'] as const;
export type QueueLeaderLocator = (typeof QUEUE_LEADER_LOCATORS)[number];

/** `all`, `none`, or a comma-separated list of consumer names. */
export function parseConsumerList(raw: string): ConsumerName[] | undefined {
  const value = raw.trim().toLowerCase();
  if (value === 'all') return [...CONSUMER_NAMES];
  if (value === 'none') return [];
  const names = value.split(',').map((name) => name.trim());
  if (!names.every((name): name is ConsumerName => (CONSUMER_NAMES as readonly string[]).includes(name))) {
    return undefined;
  }
  return [...new Set(names)];
}

interface VariableSpec<K extends keyof Config> {
  key: K;
  default: string;
  /** The expected form, shown in the error message and the reference. */
  form: string;
  description: string;
  parse: (raw: string) => Config[K] | undefined;
}

function integer(min: number, max: number) {
  return (raw: string): number | undefined => {
    if (!/^-?\d+$/.test(raw.trim())) return undefined;
    const value = Number(raw);
    return Number.isSafeInteger(value) && value >= min && value <= max ? value : undefined;
  };
}

function boolean(raw: string): boolean | undefined {
  const value = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  return undefined;
}

function url(protocols: string[]) {
  return (raw: string): string | undefined => {
    try {
      const parsed = new URL(raw);
      return protocols.includes(parsed.protocol) && parsed.hostname !== '' ? raw : undefined;
    } catch {
      return undefined;
    }
  };
}

/**
 * A comma-separated list of URLs of the given protocols (spaces around the commas allowed), each parsed
 * as {@link url} does; undefined if any entry is not one, or the list is empty or repeats a URL.
 */
function urlList(protocols: string[]) {
  const one = url(protocols);
  return (raw: string): string[] | undefined => {
    const entries = raw.split(',').map((entry) => entry.trim());
    if (entries.some((entry) => one(entry) === undefined)) return undefined;
    return new Set(entries).size === entries.length ? entries : undefined;
  };
}

/** Every variable the service reads, in the order the reference lists them. */
export const CONFIG_VARIABLES = {
  DATABASE_URL: {
    key: 'databaseUrl',
    default: 'postgres://root@127.0.0.1:5432/telemetry_bus',
    form: 'a URL postgres://user[:password]@host[:port]/database',
    description: 'PostgreSQL connection; the database is created at start if missing.',
    parse: (raw) => {
      const value = url(['postgres:', 'postgresql:'])(raw);
      // One database name: a path with `/`, `,`, `:` or `@` in it is a list or a typo, not a name.
      return value !== undefined && /^\/[^/,:@]+$/.test(new URL(value).pathname) ? value : undefined;
    },
  },
  RABBITMQ_URL: {
    key: 'rabbitmqUrls',
    default: 'amqp://guest:guest@127.0.0.1:5672',
    form: 'a URL amqp[s]://user:password@host[:port][/vhost]; several: comma-separated',
    description:
      'RabbitMQ for the telemetry bus, one URL per node: every connection takes the first node that answers and fails over to the next.',
    parse: (raw) => {
      const urls = urlList(['amqp:', 'amqps:'])(raw);
      // One deployment, one vhost: nodes of a cluster share their vhosts.
      return urls !== undefined && new Set(urls.map(vhostOf)).size === 1 ? urls : undefined;
    },
  },
  HOST: {
    key: 'host',
    default: '127.0.0.1',
    form: 'an interface address such as 127.0.0.1 or 0.0.0.0',
    description: 'Address the HTTP server binds to.',
    parse: (raw) => (/^[A-Za-z0-9.:-]+$/.test(raw) ? raw : undefined),
  },
  PORT: {
    key: 'port',
    default: '8080',
    form: 'an integer 0–65535 (0 picks a free port)',
    description: 'HTTP port.',
    parse: integer(0, 65535),
  },
  LOG_LEVEL: {
    key: 'logLevel',
    default: 'info',
    form: `one of ${LOG_LEVELS.join(', ')}`,
    description: 'Log level of the JSON logs on stdout.',
    parse: (raw) => LOG_LEVELS.find((level) => level === raw.trim().toLowerCase()),
  },
  DB_POOL_MAX: {
    key: 'dbPoolMax',
    default: String(POOL_DEFAULTS.max),
    form: 'an integer 1–1000',
    description: 'Maximum PostgreSQL connections of the API pool.',
    parse: integer(1, 1000),
  },
  CACHE_TTL_MS: {
    key: 'cacheTtlMs',
    default: '30000',
    form: 'an integer number of milliseconds, 0–86400000 (0 disables the cache)',
    description: 'How long a cached model or filter result is served, in ms.',
    parse: integer(0, 86_400_000),
  },
  CACHE_MAX_BYTES: {
    key: 'cacheMaxBytes',
    default: String(DEFAULT_CACHE_MAX_BYTES),
    form: 'an integer number of bytes, 0–68719476736 (0 disables the caches)',
    description:
      'Bytes all read caches of a process hold at most, together (models, filter pages, metrics periods, API keys), estimated.',
    parse: integer(0, 68_719_476_736),
  },
  HTTP_REQUEST_TIMEOUT_MS: {
    key: 'httpRequestTimeoutMs',
    default: String(SERVER_LIMIT_DEFAULTS.requestTimeoutMs),
    form: 'an integer number of milliseconds, 0–3600000 (0: no limit)',
    description:
      'Time a client has to send a whole request (headers and body), in ms; past it, 408 and the connection is closed. A response (a dashboard stream) is not limited by it.',
    parse: integer(0, 3_600_000),
  },
  HTTP_HEADERS_TIMEOUT_MS: {
    key: 'httpHeadersTimeoutMs',
    default: String(SERVER_LIMIT_DEFAULTS.headersTimeoutMs),
    form: 'an integer number of milliseconds, 100–3600000',
    description:
      "Time a client has to send a request's headers, in ms (at most HTTP_REQUEST_TIMEOUT_MS); past it, 408 and the connection is closed.",
    parse: integer(100, 3_600_000),
  },
  HTTP_CONNECTION_TIMEOUT_MS: {
    key: 'httpConnectionTimeoutMs',
    default: String(SERVER_LIMIT_DEFAULTS.connectionTimeoutMs),
    form: 'an integer number of milliseconds, 0–86400000 (0: no limit)',
    description:
      'Time a connection may go without traffic either way, in ms, before it is closed (a dashboard stream writes every second).',
    parse: integer(0, 86_400_000),
  },
  HTTP_KEEP_ALIVE_TIMEOUT_MS: {
    key: 'httpKeepAliveTimeoutMs',
    default: String(SERVER_LIMIT_DEFAULTS.keepAliveTimeoutMs),
    form: 'an integer number of milliseconds, 1–3600000',
    description:
      "Time an idle keep-alive connection is kept for the client's next request, in ms (behind a load balancer: above its idle timeout).",
    parse: integer(1, 3_600_000),
  },
  HTTP_MAX_CONNECTIONS: {
    key: 'httpMaxConnections',
    default: String(SERVER_LIMIT_DEFAULTS.maxConnections),
    form: 'an integer 0–1000000 (0: no cap)',
    description:
      'Connections open at once per API process, dashboard streams included; a new one over it is closed at once (and counted).',
    parse: integer(0, 1_000_000),
  },
  RATE_LIMIT_PER_MINUTE: {
    key: 'rateLimitPerMinute',
    default: '60000',
    form: 'an integer 0–100000000 (0 disables rate limiting)',
    description: 'Requests allowed per API key per minute before 429.',
    parse: integer(0, 100_000_000),
  },
  RATE_LIMIT_KEYLESS_PER_MINUTE: {
    key: 'rateLimitKeylessPerMinute',
    default: '600',
    form: 'an integer 0–100000000 (0 disables this limit)',
    description:
      'Requests without a valid API key allowed per client address per minute before 429 (/livez and /readyz are exempt).',
    parse: integer(0, 100_000_000),
  },
  API_KEY_CACHE_TTL_MS: {
    key: 'apiKeyCacheTtlMs',
    default: String(API_KEY_STORE_DEFAULTS.cacheTtlMs),
    form: 'an integer number of milliseconds, 0–3600000',
    description: 'How long a verified API key is remembered, in ms (a revocation takes effect within it).',
    parse: integer(0, 3_600_000),
  },
  SHUTDOWN_TIMEOUT_MS: {
    key: 'shutdownTimeoutMs',
    default: '10000',
    form: 'an integer number of milliseconds, 100–600000',
    description: 'Time a graceful shutdown may take before the process exits anyway, in ms.',
    parse: integer(100, 600_000),
  },
  BOOTSTRAP_ADMIN_KEY: {
    key: 'bootstrapAdminKey',
    default: 'true',
    form: 'true or false',
    description: 'On a start that finds no API keys, create an admin key and print it once.',
    parse: boolean,
  },
  TRUST_PROXY: {
    key: 'trustProxy',
    default: 'false',
    form: 'true or false',
    description: 'Take the client address from X-Forwarded-For (only behind a trusted proxy).',
    parse: boolean,
  },
  EVENT_IP_ADDRESS: {
    key: 'eventIpAddress',
    default: 'full',
    form: `one of ${IP_ADDRESS_MODES.join(', ')}`,
    description:
      "What every event stores of the client's IP address (personal data): `full`; `truncated` to its network (IPv4 /24, IPv6 /48); `hashed`, an HMAC under EVENT_IP_HASH_KEY (see docs/reference/security.md).",
    parse: (raw) => IP_ADDRESS_MODES.find((mode) => mode === raw.trim()),
  },
  EVENT_IP_HASH_KEY: {
    key: 'eventIpHashKey',
    default: 'off',
    form: 'off, or a secret of 32–256 characters A–Z a–z 0–9 _ -',
    description:
      'Key of the HMAC that EVENT_IP_ADDRESS=hashed stores; the same on every API process to match hashes across them. `off`: a random key per process.',
    parse: (raw) => {
      const value = raw.trim();
      if (value === 'off') return '';
      return /^[A-Za-z0-9_-]{32,256}$/.test(value) ? value : undefined;
    },
  },
  DATA_DIR: {
    key: 'dataDir',
    default: 'data',
    form: 'a directory path (relative to the working directory, or absolute)',
    description:
      'Where this process keeps its event spool (`<DATA_DIR>/spool`) and error log (`<DATA_DIR>/logs`); one per process.',
    parse: (raw) => (raw.trim() === '' || raw.includes('\0') ? undefined : raw),
  },
  TELEMETRY_ENABLED: {
    key: 'telemetryEnabled',
    default: 'true',
    form: 'true or false',
    description: 'Emit an event for every request. Turn off only to measure what the bus costs.',
    parse: boolean,
  },
  SPOOL_MAX_BYTES: {
    key: 'spoolMaxBytes',
    default: String(SPOOL_DEFAULTS.maxBytes),
    form: 'an integer number of bytes, 1048576–1099511627776',
    description: 'Spool size at which new events are dropped (and counted as `spool_full`), in bytes.',
    parse: integer(1_048_576, 1_099_511_627_776),
  },
  SPOOL_SEGMENT_BYTES: {
    key: 'spoolSegmentBytes',
    default: String(SPOOL_DEFAULTS.segmentBytes),
    form: 'an integer number of bytes, 65536–1073741824',
    description: 'Size of one spool segment file, in bytes; confirmed segments are deleted whole.',
    parse: integer(65_536, 1_073_741_824),
  },
  SPOOL_FSYNC_INTERVAL_MS: {
    key: 'spoolFsyncIntervalMs',
    default: String(SPOOL_DEFAULTS.fsyncIntervalMs),
    form: 'an integer number of milliseconds, 0–1000 (0 syncs every event)',
    description: 'Interval between fsyncs of the spool, in ms: what a power cut (not a crash) can lose.',
    parse: integer(0, 1000),
  },
  LEDGER_FLUSH_INTERVAL_MS: {
    key: 'ledgerFlushIntervalMs',
    default: String(LEDGER_WRITER_DEFAULTS.intervalMs),
    form: 'an integer number of milliseconds, 100–60000',
    description:
      'Interval between writes of the loss-ledger counts (emitted, spooled, confirmed) to PostgreSQL, in ms.',
    parse: integer(100, 60_000),
  },
  RABBITMQ_HEARTBEAT_S: {
    key: 'rabbitmqHeartbeatSeconds',
    default: String(SPOOL_PUBLISHER_DEFAULTS.heartbeatSeconds),
    form: 'an integer number of seconds, 1–60',
    description: 'AMQP heartbeat, in s: a silent broker connection is dropped after about twice this.',
    parse: integer(1, 60),
  },
  RABBITMQ_MANAGEMENT_URL: {
    key: 'rabbitmqManagementUrls',
    default: 'http://guest:guest@127.0.0.1:15672',
    form: 'a URL http[s]://user:password@host[:port] (several: comma-separated), or off',
    description:
      'RabbitMQ management API (one URL per node, tried in order), for queue statistics in `GET /health` and leaders in `topology show`; when none answers, or `off`: AMQP passive declares.',
    parse: (raw) => (raw.trim() === 'off' ? [] : urlList(['http:', 'https:'])(raw)),
  },
  QUORUM_INITIAL_GROUP_SIZE: {
    key: 'quorumInitialGroupSize',
    default: 'broker',
    form: 'broker, or an integer 1–99',
    description:
      "Members of a new quorum queue (`x-quorum-initial-group-size`); `broker`: the broker's default (every node).",
    parse: (raw) => (raw.trim() === 'broker' ? null : integer(1, 99)(raw)),
  },
  QUEUE_LEADER_LOCATOR: {
    key: 'queueLeaderLocator',
    default: 'balanced',
    form: `${QUEUE_LEADER_LOCATORS.join(', ')} or broker`,
    description:
      "Node of a new quorum queue's leader (`x-queue-leader-locator`): `balanced` spreads leaders over the nodes; `client-local`: the declaring client's; `broker`: the broker's setting.",
    parse: (raw) => {
      const value = raw.trim();
      if (value === 'broker') return null;
      return QUEUE_LEADER_LOCATORS.find((locator) => locator === value);
    },
  },
  PUBLISH_WINDOW: {
    key: 'publishWindow',
    default: String(SPOOL_PUBLISHER_DEFAULTS.window),
    form: 'an integer 1–100000',
    description: 'Events published to RabbitMQ and not yet confirmed, at most.',
    parse: integer(1, 100_000),
  },
  PUBLISH_CONFIRM_TIMEOUT_MS: {
    key: 'publishConfirmTimeoutMs',
    default: String(SPOOL_PUBLISHER_DEFAULTS.confirmTimeoutMs),
    form: 'an integer number of milliseconds, 100–600000',
    description: 'Time to wait for a broker confirm before reconnecting and resending, in ms.',
    parse: integer(100, 600_000),
  },
  RETRY_DELAYS_MS: {
    key: 'retryDelaysMs',
    default: DEFAULT_RETRY_DELAYS_MS.join(','),
    form: 'comma-separated distinct integers of milliseconds, 1–86400000 each',
    description: "Delays of the consumers' retry ladder, in ms; a message fails for good after the last.",
    parse: (raw) => {
      const delays = raw.split(',').map((part) => integer(1, 86_400_000)(part));
      if (delays.some((delay) => delay === undefined)) return undefined;
      return new Set(delays).size === delays.length ? (delays as number[]) : undefined;
    },
  },
  CONSUMERS: {
    key: 'consumers',
    default: 'all',
    form: `all, none, or a comma-separated list of ${CONSUMER_NAMES.join(', ')}`,
    description: 'Consumers `telemetry-bus start` runs beside the API (and `worker` runs unless told).',
    parse: parseConsumerList,
  },
  CONSUMER_PREFETCH: {
    key: 'consumerPrefetch',
    default: String(CONSUMER_RUNTIME_DEFAULTS.prefetch),
    form: 'an integer 1–65535',
    description: 'Unacknowledged deliveries per consumer: what one consumer holds in memory at most.',
    parse: integer(1, 65_535),
  },
  CONSUMER_BATCH_SIZE: {
    key: 'consumerBatchSize',
    default: String(CONSUMER_RUNTIME_DEFAULTS.batchSize),
    form: 'an integer 1–10000',
    description: 'Messages a consumer applies in one PostgreSQL transaction, at most.',
    parse: integer(1, 10_000),
  },
  AUDIT_PARTITIONS: {
    key: 'auditPartitions',
    default: '1',
    form: 'an integer 1–64',
    description:
      'Partitions of `audit.trail` by model_id, each applied in order by one worker at a time (needs the `rabbitmq_consistent_hash_exchange` plugin above 1). Same value in every process.',
    parse: integer(1, 64),
  },
  ERROR_LOG_MAX_BYTES: {
    key: 'errorLogMaxBytes',
    default: String(ROTATING_FILE_DEFAULTS.maxFileBytes),
    form: 'an integer number of bytes, 4096–1073741824',
    description: 'Size at which the logging consumer rotates `<DATA_DIR>/logs/errors.log`, in bytes.',
    parse: integer(4096, 1_073_741_824),
  },
  ERROR_LOG_MAX_FILES: {
    key: 'errorLogMaxFiles',
    default: String(ROTATING_FILE_DEFAULTS.maxFiles),
    form: 'an integer 0–100',
    description: 'Rotated error log files kept (`errors.log.1` … `.N`); older ones are deleted.',
    parse: integer(0, 100),
  },
  METRICS_SCRAPE_TOKEN: {
    key: 'metricsScrapeToken',
    default: 'off',
    form: 'off, or a token of 16–256 characters A–Z a–z 0–9 . _ ~ + / = -',
    description:
      'Bearer token a Prometheus scrape of the API or a worker must send; `off`: the metrics are open.',
    parse: (raw) => {
      const value = raw.trim();
      if (value === 'off') return '';
      return /^[A-Za-z0-9._~+/=-]{16,256}$/.test(value) ? value : undefined;
    },
  },
  WORKER_METRICS_PORT: {
    key: 'workerMetricsPort',
    default: 'off',
    form: 'off, or an integer 0–65535 (0 picks a free port)',
    description:
      'Port on which `telemetry-bus worker` serves its Prometheus metrics (`GET /metrics`, on `HOST`); `off`: none.',
    parse: (raw) => (raw.trim() === 'off' ? null : integer(0, 65535)(raw)),
  },
  METRICS_RAW_RETENTION_DAYS: {
    key: 'metricsRawRetentionDays',
    default: String(METRICS_PRUNER_DEFAULTS.rawRetentionDays),
    form: 'an integer number of days, 1–3650',
    description:
      'Days the metrics consumer keeps raw applied events (`metrics_events`); older ones are pruned.',
    parse: integer(1, 3650),
  },
  METRICS_ROLLUP_RETENTION_DAYS: {
    key: 'metricsRollupRetentionDays',
    default: String(METRICS_PRUNER_DEFAULTS.rollupRetentionDays),
    form: 'an integer number of days, 1–3650',
    description:
      'Days the per-minute, hourly and daily metrics rollups are kept; `GET /metrics` reaches no further back.',
    parse: integer(1, 3650),
  },
  METRICS_PRUNE_INTERVAL_MS: {
    key: 'metricsPruneIntervalMs',
    default: String(METRICS_PRUNER_DEFAULTS.intervalMs),
    form: 'an integer number of milliseconds, 1000–86400000',
    description:
      'Time between two prunings of the metrics tables by the process running the metrics consumer, in ms.',
    parse: integer(1000, 86_400_000),
  },
  APPLIED_EVENTS_RETENTION_DAYS: {
    key: 'appliedEventsRetentionDays',
    default: String(APPLIED_EVENTS_RETENTION_DEFAULTS.retentionDays),
    form: 'an integer number of days, 1–3650',
    description:
      'Days the consumers keep a de-duplication record unused (a producer stream in `consumer_stream_marks`, an event id in `consumer_applied_events`), to refuse a second copy; one whose producer or event has a dead letter in the archive stays until that is replayed or deleted.',
    parse: integer(1, 3650),
  },
  AUDIT_KEYLESS_RETENTION_DAYS: {
    key: 'auditKeylessRetentionDays',
    default: '30',
    form: 'an integer number of days, 0–3650',
    description:
      'Days the audit trail keeps each client error (4xx) of a request without a valid key as a record; then only its count per day, status and error code (`GET /audit/keyless`). 0 keeps them as records for ever. Model events, filters, authenticated errors and 5xx are kept for ever.',
    parse: integer(0, 3650),
  },
} satisfies { [name: string]: VariableSpec<keyof Config> };

/**
 * Reads and validates the configuration. Throws a {@link ConfigError} with one line per bad variable,
 * naming it and the form it expects (an operator fixes them all in one go); credentials in a bad value
 * are never echoed.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const config: Partial<Record<keyof Config, unknown>> = {};
  const problems: Array<{ name: string; line: string }> = [];
  for (const [name, spec] of Object.entries(CONFIG_VARIABLES) as [string, VariableSpec<keyof Config>][]) {
    const raw = env[name];
    const source = raw === undefined || raw === '' ? spec.default : raw;
    const value = spec.parse(source);
    if (value === undefined) {
      problems.push({
        name,
        line: `invalid ${name}: expected ${spec.form}, got ${JSON.stringify(redactCredentials(source))}`,
      });
    }
    config[spec.key] = value;
  }
  const [first] = problems;
  if (first !== undefined)
    throw new ConfigError(first.name, problems.map((problem) => problem.line).join('\n'));
  return config as Config;
}

/** The HTTP server's limits, as configured. */
export function serverLimitsOf(config: Config): ServerLimits {
  return {
    requestTimeoutMs: config.httpRequestTimeoutMs,
    headersTimeoutMs: config.httpHeadersTimeoutMs,
    connectionTimeoutMs: config.httpConnectionTimeoutMs,
    keepAliveTimeoutMs: config.httpKeepAliveTimeoutMs,
    maxConnections: config.httpMaxConnections,
  };
}
