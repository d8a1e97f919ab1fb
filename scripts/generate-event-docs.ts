/**
 * Generates the event documentation from the code that defines the events, so the two cannot disagree:
 * `docs/events/<event_type>.json` (each JSON Schema), `docs/events/README.md` (the events reference) and
 * `docs/asyncapi.yaml` (the AsyncAPI 3.0 description of the whole RabbitMQ topology).
 *
 *   node --import tsx scripts/generate-event-docs.ts           writes the files
 *   node --import tsx scripts/generate-event-docs.ts --check   exits 1 listing the files that are stale
 *
 * `test/unit/bus/asyncapi.test.ts` runs the same check, and parses the AsyncAPI document independently.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { eventJsonSchemas } from '../src/bus/event-schemas.ts';
import { EVENT_TYPES, type EventType, SCHEMA_VERSION } from '../src/bus/event-types.ts';
import { PRODUCER_HEADERS } from '../src/bus/producer-sequence.ts';
import {
  buildTopology,
  EXCHANGES,
  exchangeFor,
  PARTITION_HASH_HEADER,
  QUEUES,
  type QueueSpec,
  queuesFor,
  type Topology,
  WORK_QUEUES,
} from '../src/bus/topology.ts';
import { exampleEvent } from '../test/support/event-examples.ts';

type JsonSchema = Record<string, unknown>;

export const EVENTS_DIR = 'docs/events';
export const ASYNCAPI_PATH = 'docs/asyncapi.yaml';
export const GENERATE_COMMAND = 'node --import tsx scripts/generate-event-docs.ts';

/** The repository root, which every path of {@link renderEventDocs} is relative to. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

const AMQP_BINDING_VERSION = '0.3.0';

/** Channel ids: an exchange and a queue can share a name (`retry.1s` is both), so ids are prefixed. */
export const exchangeChannelId = (exchange: string): string => `exchange.${exchange}`;
export const queueChannelId = (queue: string): string => `queue.${queue}`;

/** Every generated file, keyed by its path relative to the repository root. */
export function renderEventDocs(): Map<string, string> {
  const schemas = eventJsonSchemas();
  const topology = buildTopology();
  const files = new Map<string, string>();
  for (const type of EVENT_TYPES) {
    files.set(`${EVENTS_DIR}/${type}.json`, `${JSON.stringify(schemas[type], null, 2)}\n`);
  }
  files.set(`${EVENTS_DIR}/README.md`, renderReadme(schemas, topology));
  files.set(ASYNCAPI_PATH, renderAsyncApi(schemas, topology));
  return files;
}

/** The event types whose messages reach `queue` straight from the publisher. */
function typesRoutedTo(topology: Topology, queue: string): EventType[] {
  return EVENT_TYPES.filter((type) => queuesFor(topology, exchangeFor(type), type).includes(queue));
}

/**
 * The event types that can sit in a queue or pass an exchange of the retry and dead-letter machinery:
 * any type that reaches a work queue can be retried and, in the end, dead-lettered.
 */
function typesInWorkQueues(topology: Topology): EventType[] {
  return EVENT_TYPES.filter((type) =>
    WORK_QUEUES.some((queue) => queuesFor(topology, exchangeFor(type), type).includes(queue)),
  );
}

// ---------------------------------------------------------------------------------------------------
// docs/events/README.md

interface FieldRow {
  path: string;
  type: string;
  required: boolean;
  description: string;
}

const code = (value: string): string => `\`${value}\``;
const codeList = (values: readonly string[]): string => values.map(code).join(', ');
/** Keeps a table cell on one line and its pipes from splitting it (GFM honours `\|`, in code spans too). */
const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

const asSchema = (value: unknown): JsonSchema => (value ?? {}) as JsonSchema;

/** The object schema fields are listed from: the schema itself, or the object member of a nullable union. */
function objectSchema(schema: JsonSchema): JsonSchema | undefined {
  if (schema.type === 'object') return schema;
  const members = (schema.anyOf as JsonSchema[] | undefined) ?? [];
  return members.find((member) => member.type === 'object');
}

function typeName(schema: JsonSchema): string {
  if (schema.const !== undefined) return code(JSON.stringify(schema.const));
  if (Array.isArray(schema.enum))
    return `one of ${schema.enum.map((value) => code(String(value))).join(', ')}`;
  if (Array.isArray(schema.anyOf)) return (schema.anyOf as JsonSchema[]).map(typeName).join(' or ');
  const type = String(schema.type ?? 'any');
  return typeof schema.format === 'string' ? `${type} (${schema.format})` : type;
}

function range(min: unknown, max: unknown, unit = ''): string | undefined {
  if (min !== undefined && max !== undefined) return `${min}–${max}${unit}`;
  if (min !== undefined) return `≥ ${min}${unit}`;
  if (max !== undefined) return `≤ ${max}${unit}`;
  return undefined;
}

/** The description, then the constraints a reader needs to produce a valid value. */
function describe(schema: JsonSchema): string {
  const parts: string[] = [];
  const members = Array.isArray(schema.anyOf) ? (schema.anyOf as JsonSchema[]) : [schema];
  const description = schema.description ?? members.find((member) => member.description)?.description;
  if (typeof description === 'string') parts.push(description);
  for (const member of members) {
    const length = range(member.minLength, member.maxLength, ' characters');
    if (length !== undefined) parts.push(length);
    const value = range(member.minimum, member.maximum);
    if (value !== undefined) parts.push(value);
    if (typeof member.pattern === 'string') parts.push(`pattern ${code(member.pattern)}`);
    if (member.default !== undefined) parts.push(`default ${code(JSON.stringify(member.default))}`);
    if (member.type === 'object' && Object.keys(asSchema(member.properties)).length === 0) {
      parts.push('always `{}`');
    } else if (member.additionalProperties === false) {
      parts.push('no other fields');
    }
  }
  return parts.join('; ');
}

function fieldRows(schema: JsonSchema, prefix = ''): FieldRow[] {
  const required = new Set((schema.required as string[] | undefined) ?? []);
  return Object.entries(asSchema(schema.properties)).flatMap(([name, value]) => {
    const child = asSchema(value);
    const path = prefix === '' ? name : `${prefix}.${name}`;
    const row: FieldRow = {
      path,
      type: typeName(child),
      required: required.has(name),
      description: describe(child),
    };
    const nested = objectSchema(child);
    return [row, ...(nested === undefined ? [] : fieldRows(nested, path))];
  });
}

function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(cell).join(' | ')} |`),
  ];
}

/** GitHub's anchor of a heading: lower case, punctuation (the dots of an event type) dropped. */
const anchor = (heading: string): string => `#${heading.toLowerCase().replace(/[^a-z0-9 _-]/g, '')}`;

const formatArguments = (queue: QueueSpec): string =>
  Object.entries(queue.arguments)
    .map(([name, value]) => code(`${name}=${value}`))
    .join(', ');

function renderReadme(schemas: Record<EventType, JsonSchema>, topology: Topology): string {
  const lines: string[] = [
    '# Events reference',
    '',
    `<!-- Generated by scripts/generate-event-docs.ts from src/bus/event-schemas.ts and src/bus/topology.ts. Do not edit: run \`${GENERATE_COMMAND}\`. -->`,
    '',
    'Every request to the API emits exactly one event to RabbitMQ; an operator replaying dead letters',
    '(`POST /dlq/replay`, `telemetry-bus dlq replay`) also emits `dlq.replayed`, for the audit trail. An event is a JSON object (an',
    `*envelope*, \`schema_version\` ${SCHEMA_VERSION}) published to one exchange with its \`event_type\` as`,
    'routing key; the bindings fan it out to the queues that want it. Each event type has a JSON Schema in',
    'this directory (`<event_type>.json`), also served by the API at `GET /schemas/events/<event_type>`,',
    'and the whole bus is described in [`../asyncapi.yaml`](../asyncapi.yaml) (AsyncAPI 3.0).',
    '',
    '## Routing',
    '',
    ...table(
      ['Event type', 'Exchange', 'Routing key', 'Queues'],
      EVENT_TYPES.map((type) => {
        const exchange = exchangeFor(type);
        return [
          `[${code(type)}](${anchor(type)})`,
          code(exchange),
          code(type),
          codeList(queuesFor(topology, exchange, type)),
        ];
      }),
    ),
    '',
    '## Topology',
    '',
    'A consumer that fails a message republishes it to `retry.<delay>` with its own queue name as routing',
    'key; when the delay is over, `retry.requeue` returns it to that queue only. A message that exhausts the',
    'retries, fails validation or hits the delivery limit is dead-lettered to `dead.letters`.',
    '',
    ...table(
      ['Exchange', 'Type', 'Description'],
      topology.exchanges.map((exchange) => [code(exchange.name), exchange.type, exchange.description]),
    ),
    '',
    ...table(
      ['Queue', 'Bound to (exchange: pattern)', 'Arguments', 'Description'],
      topology.queues.map((queue) => [
        code(queue.name),
        topology.bindings
          .filter((binding) => binding.queue === queue.name)
          .map(
            (binding) =>
              `${code(binding.exchange)}: ${code(binding.pattern === '' ? '""' : binding.pattern)}`,
          )
          .join(', '),
        formatArguments(queue),
        queue.description,
      ]),
    ),
  ];

  for (const type of EVENT_TYPES) {
    const schema = schemas[type];
    const exchange = exchangeFor(type);
    const exchangeType = topology.exchanges.find((spec) => spec.name === exchange)?.type ?? '?';
    lines.push(
      '',
      `## ${type}`,
      '',
      `${String(schema.description)}.`,
      '',
      `- Exchange: ${code(exchange)} (${exchangeType}), routing key ${code(type)}`,
      `- Queues: ${codeList(queuesFor(topology, exchange, type))}`,
      `- Schema: [${code(`${type}.json`)}](${type}.json) (\`$id\` ${code(String(schema.$id))})`,
      '',
      '### Fields',
      '',
      ...table(
        ['Path', 'Type', 'Required', 'Description'],
        fieldRows(schema).map((row) => [
          code(row.path),
          row.type,
          row.required ? 'yes' : 'no',
          row.description,
        ]),
      ),
      '',
      '### Example',
      '',
      '```json',
      JSON.stringify(exampleEvent(type), null, 2),
      '```',
    );
  }
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------------
// docs/asyncapi.yaml

const ref = (pointer: string): { $ref: string } => ({ $ref: pointer });
const messageRef = (type: EventType) => ref(`#/components/messages/${type}`);
const channelMessages = (types: readonly EventType[]) =>
  Object.fromEntries(types.map((type) => [type, messageRef(type)]));
const operationMessages = (channelId: string, types: readonly EventType[]) =>
  types.map((type) => ref(`#/channels/${channelId}/messages/${type}`));

/**
 * CloudEvents' AMQP binding (binary mode) carries the event attributes as application properties with a
 * `cloudEvents:` prefix; they repeat envelope fields so a router or tracer need not parse the body.
 */
const EVENT_HEADERS: JsonSchema = {
  type: 'object',
  description: 'AMQP application properties (headers) of every event message',
  required: [
    'cloudEvents:specversion',
    'cloudEvents:id',
    'cloudEvents:type',
    'cloudEvents:source',
    'cloudEvents:time',
  ],
  properties: {
    'cloudEvents:specversion': { type: 'string', const: '1.0', description: 'CloudEvents version' },
    'cloudEvents:id': { type: 'string', format: 'uuid', description: 'Equals the event_id of the payload' },
    'cloudEvents:type': {
      type: 'string',
      enum: [...EVENT_TYPES],
      description: 'Equals the event_type of the payload (and the routing key)',
    },
    'cloudEvents:source': {
      type: 'string',
      format: 'uri-reference',
      description: 'The component that emitted the event (the payload source)',
    },
    'cloudEvents:time': {
      type: 'string',
      format: 'date-time',
      description: 'Equals the timestamp of the payload',
    },
    traceparent: {
      type: 'string',
      pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$',
      description: 'W3C Trace Context of the request that caused the event, when it had one',
    },
    [PARTITION_HASH_HEADER]: {
      type: 'string',
      description:
        'The data.model_id of the event, when it has one: what the consistent-hash exchange of a partitioned queue hashes (AUDIT_PARTITIONS)',
    },
    [PRODUCER_HEADERS.producer]: {
      type: 'string',
      format: 'uuid',
      description:
        'The producer (one API process, from its start) that emitted the event; with x-sequence, how consumers de-duplicate copies without a row per event',
    },
    [PRODUCER_HEADERS.sequence]: {
      type: 'integer',
      minimum: 1,
      description:
        "The event's number in its producer's sequence of events of its type: 1, 2, 3, … with no gap; a resent copy carries the same",
    },
  },
};

/** The example's headers, built from the example payload exactly as the header descriptions say. */
function exampleHeaders(event: ReturnType<typeof exampleEvent>): Record<string, string | number> {
  const modelId = (event.data as { model_id?: unknown }).model_id;
  return {
    ...(typeof modelId === 'string' ? { [PARTITION_HASH_HEADER]: modelId } : {}),
    'cloudEvents:specversion': '1.0',
    'cloudEvents:id': event.event_id,
    'cloudEvents:type': event.event_type,
    'cloudEvents:source': `/telemetry-bus/${event.source}`,
    'cloudEvents:time': event.timestamp,
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    [PRODUCER_HEADERS.producer]: '019b0a6e-5a1c-7c3e-8f21-4d6b2a9c0e17',
    [PRODUCER_HEADERS.sequence]: 1,
  };
}

function queueChannel(topology: Topology, queue: QueueSpec, types: readonly EventType[]) {
  return {
    address: queue.name,
    title: `Queue ${queue.name}`,
    description: queue.description,
    messages: channelMessages(types),
    bindings: {
      amqp: {
        is: 'queue',
        queue: { name: queue.name, durable: true, exclusive: false, autoDelete: false, vhost: '/' },
        bindingVersion: AMQP_BINDING_VERSION,
      },
    },
    // AMQP's channel binding has no place for queue arguments or for the bindings that feed the queue;
    // these two extensions carry them, so the topology can be rebuilt from this document alone.
    'x-arguments': queue.arguments,
    'x-bindings': topology.bindings
      .filter((binding) => binding.queue === queue.name)
      .map((binding) => ({ exchange: binding.exchange, pattern: binding.pattern })),
  };
}

function renderAsyncApi(schemas: Record<EventType, JsonSchema>, topology: Topology): string {
  const allTypes = typesInWorkQueues(topology);
  const publishedTo = (exchange: string) => EVENT_TYPES.filter((type) => exchangeFor(type) === exchange);
  const isWorkQueue = (queue: string) => (WORK_QUEUES as readonly string[]).includes(queue);
  /** What a queue can hold: work queues their routed types; dead-letter and retry queues any of them. */
  const queueTypes = (queue: string) => (isWorkQueue(queue) ? typesRoutedTo(topology, queue) : allTypes);
  const exchangeTypes = (exchange: string) => {
    const published = publishedTo(exchange);
    return published.length > 0 ? published : allTypes;
  };

  const channels: Record<string, unknown> = {};
  for (const exchange of topology.exchanges) {
    const feeds = topology.exchangeBindings.filter((binding) => binding.destination === exchange.name);
    channels[exchangeChannelId(exchange.name)] = {
      address: exchange.name,
      title: `Exchange ${exchange.name}`,
      description: exchange.description,
      messages: channelMessages(exchangeTypes(exchange.name)),
      // As for queues: the exchange's arguments and the exchanges bound to it (a partitioned queue's).
      ...(exchange.arguments === undefined ? {} : { 'x-arguments': exchange.arguments }),
      ...(feeds.length === 0
        ? {}
        : { 'x-bindings': feeds.map((binding) => ({ exchange: binding.source, pattern: binding.pattern })) }),
      bindings: {
        amqp: {
          is: 'routingKey',
          exchange: {
            name: exchange.name,
            type: exchange.type,
            durable: true,
            autoDelete: false,
            vhost: '/',
          },
          bindingVersion: AMQP_BINDING_VERSION,
        },
      },
    };
  }
  for (const queue of topology.queues) {
    channels[queueChannelId(queue.name)] = queueChannel(topology, queue, queueTypes(queue.name));
  }

  const operations: Record<string, unknown> = {};
  for (const exchange of topology.exchanges) {
    const types = publishedTo(exchange.name);
    if (types.length === 0) continue;
    const channelId = exchangeChannelId(exchange.name);
    operations[`publish.${exchange.name}`] = {
      action: 'send',
      channel: ref(`#/channels/${channelId}`),
      title: `Publish to ${exchange.name}`,
      summary:
        exchange.name === EXCHANGES.admin
          ? `The API (through its spool) and the CLI publish ${types.join(', ')} here, with its event type as routing key`
          : `The API publishes ${types.join(', ')} here, each with its event type as routing key`,
      messages: operationMessages(channelId, types),
      // Not the binding's `cc`: a generated publisher would send it as RabbitMQ's CC header.
      'x-routing-keys': types,
      bindings: { amqp: { deliveryMode: 2, bindingVersion: AMQP_BINDING_VERSION } },
    };
  }
  for (const queue of [...WORK_QUEUES, QUEUES.deadLetters]) {
    const channelId = queueChannelId(queue);
    const types = queueTypes(queue);
    operations[`consume.${queue}`] = {
      action: 'receive',
      channel: ref(`#/channels/${channelId}`),
      title: `Consume ${queue}`,
      summary: isWorkQueue(queue)
        ? `A consumer takes ${types.join(', ')} from ${queue}; a failure goes through the retry ladder`
        : `The dead-letter consumer archives every message dead-lettered by the work queues`,
      messages: operationMessages(channelId, types),
      bindings: { amqp: { ack: true, bindingVersion: AMQP_BINDING_VERSION } },
    };
  }

  const messages = Object.fromEntries(
    EVENT_TYPES.map((type) => {
      const example = exampleEvent(type);
      return [
        type,
        {
          name: type,
          title: type,
          summary: String(schemas[type].description),
          contentType: 'application/json',
          headers: ref('#/components/schemas/EventHeaders'),
          payload: schemas[type],
          correlationId: ref('#/components/correlationIds/correlationId'),
          bindings: { amqp: { messageType: type, bindingVersion: AMQP_BINDING_VERSION } },
          examples: [{ name: `${type}-example`, headers: exampleHeaders(example), payload: example }],
        },
      ];
    }),
  );

  const document = {
    asyncapi: '3.0.0',
    info: {
      title: 'telemetry-bus events',
      version: '1.0.0',
      description: [
        'The telemetry events of the Model Registry API: every request emits one event, published to a',
        'RabbitMQ exchange chosen by its type with the type as routing key, and fanned out to the work',
        'queues by their bindings. Failed messages go through per-queue retry queues and end in the',
        'dead-letter queue. This is the default topology: with AUDIT_PARTITIONS=N > 1, audit.trail is replaced',
        'by audit.trail.p0 … audit.trail.p(N-1) behind the consistent-hash exchange audit.trail.hash (bound to',
        'the exchanges audit.trail is bound to here, hashing the model_id header), each partition a work queue',
        'of its own (see docs/guides/ordering.md and `telemetry-bus topology show`).',
        'Generated by scripts/generate-event-docs.ts from src/bus/event-schemas.ts and',
        'src/bus/topology.ts: do not edit by hand.',
      ].join(' '),
    },
    defaultContentType: 'application/json',
    servers: {
      rabbitmq: {
        host: '127.0.0.1:5672',
        protocol: 'amqp',
        protocolVersion: '0-9-1',
        description: 'The RabbitMQ broker of docker-compose.yml',
      },
    },
    channels,
    operations,
    components: {
      schemas: { EventHeaders: EVENT_HEADERS },
      messages,
      correlationIds: {
        correlationId: {
          description:
            'The correlation_id of the payload: the x-correlation-id of the request that caused the event. ' +
            'The publisher also sets it as the AMQP correlation_id property, which AsyncAPI cannot address.',
          location: '$message.payload#/correlation_id',
        },
      },
    },
  };
  return new YAML.Document(document, { aliasDuplicateObjects: false }).toString({ lineWidth: 0 });
}

// ---------------------------------------------------------------------------------------------------
// Command line

/** Paths of generated files whose content on disk differs, and of stale files nothing generates. */
export function staleFiles(files: Map<string, string>, root = ROOT): { changed: string[]; extra: string[] } {
  const changed = [...files]
    .filter(([path, content]) => {
      const file = join(root, path);
      return !existsSync(file) || readFileSync(file, 'utf8') !== content;
    })
    .map(([path]) => path);
  const dir = join(root, EVENTS_DIR);
  const extra = existsSync(dir)
    ? readdirSync(dir)
        .map((name) => `${EVENTS_DIR}/${name}`)
        .filter((path) => !files.has(path))
    : [];
  return { changed, extra };
}

function main(args: string[]): number {
  const files = renderEventDocs();
  const { changed, extra } = staleFiles(files);
  if (args.includes('--check')) {
    if (changed.length === 0 && extra.length === 0) return 0;
    for (const path of changed) console.error(`out of date: ${path}`);
    for (const path of extra) console.error(`not generated (remove it): ${path}`);
    console.error(`run: ${GENERATE_COMMAND}`);
    return 1;
  }
  for (const path of changed) {
    const file = join(ROOT, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, files.get(path) as string);
    console.log(`wrote ${path}`);
  }
  // A removed event type must not leave its schema behind for consumers to trust.
  for (const path of extra) {
    rmSync(join(ROOT, path));
    console.log(`removed ${path}`);
  }
  if (changed.length === 0 && extra.length === 0) console.log('event docs are up to date');
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
