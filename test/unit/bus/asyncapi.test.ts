/**
 * `docs/asyncapi.yaml` is valid AsyncAPI and says what the code does. The topology, the payloads and the
 * routing are rebuilt from the *parsed* document — never from the generator — and compared with
 * `buildTopology()`, `eventJsonSchemas()` and `queuesFor()`; a last test keeps every generated file in
 * step with its generator.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import {
  type AsyncAPIDocumentInterface,
  type ChannelInterface,
  DiagnosticSeverity,
  Parser,
} from '@asyncapi/parser';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import {
  ASYNCAPI_PATH,
  GENERATE_COMMAND,
  ROOT,
  renderEventDocs,
  staleFiles,
} from '../../../scripts/generate-event-docs.ts';
import { eventJsonSchemas } from '../../../src/bus/event-schemas.ts';
import { EVENT_TYPES } from '../../../src/bus/event-types.ts';
import {
  type BindingSpec,
  buildTopology,
  type ExchangeSpec,
  exchangeFor,
  QUEUES,
  type QueueSpec,
  queuesFor,
  type Topology,
  WORK_QUEUES,
} from '../../../src/bus/topology.ts';

interface AmqpChannelBinding {
  is: 'routingKey' | 'queue';
  exchange?: {
    name: string;
    type: ExchangeSpec['type'];
    durable: boolean;
    autoDelete: boolean;
    vhost: string;
  };
  queue?: { name: string; durable: boolean; exclusive: boolean; autoDelete: boolean; vhost: string };
}

/** The parser annotates schemas with `x-parser-*` keys; the comparison is with the schema as written. */
function withoutParserKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutParserKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !key.startsWith('x-parser-'))
      .map(([key, child]) => [key, withoutParserKeys(child)]),
  );
}

const byJson = <T>(items: T[]): T[] =>
  [...items].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
const sortedTopology = (topology: Topology): Topology => ({
  exchanges: byJson(topology.exchanges),
  queues: byJson(topology.queues),
  bindings: byJson(topology.bindings),
  exchangeBindings: byJson(topology.exchangeBindings),
});

const amqpOf = (channel: ChannelInterface): AmqpChannelBinding => {
  const binding = channel.bindings().get('amqp');
  assert.ok(binding !== undefined, `channel ${channel.id()} has no amqp binding`);
  return binding.value<AmqpChannelBinding>();
};

/**
 * The names of the messages of the `action` operations at `address`: publishers send to exchange channels,
 * consumers receive from queue channels (an exchange and a queue can share an address, like `retry.1s`).
 */
function operationMessages(document: AsyncAPIDocumentInterface, action: 'send' | 'receive', address: string) {
  const kind = action === 'send' ? 'routingKey' : 'queue';
  return document
    .operations()
    .all()
    .filter((operation) => operation.action() === action)
    .filter((operation) =>
      operation
        .channels()
        .all()
        .some((channel) => channel.address() === address && amqpOf(channel).is === kind),
    )
    .flatMap((operation) =>
      operation
        .messages()
        .all()
        .map((message) => message.name()),
    );
}

const topology = buildTopology();

describe('docs/asyncapi.yaml', () => {
  let document: AsyncAPIDocumentInterface;

  before(async () => {
    const text = readFileSync(join(ROOT, ASYNCAPI_PATH), 'utf8');
    const { document: parsed, diagnostics } = await new Parser().parse(text);
    const errors = diagnostics.filter((diagnostic) => diagnostic.severity === DiagnosticSeverity.Error);
    assert.deepEqual(
      errors.map((error) => `${error.path.join('/')}: ${error.message} (${error.code})`),
      [],
      `${ASYNCAPI_PATH} is not valid AsyncAPI`,
    );
    assert.ok(parsed !== undefined);
    document = parsed;
  });

  test('is AsyncAPI 3.0.0 with the RabbitMQ server', () => {
    assert.equal(document.version(), '3.0.0');
    assert.equal(document.info().title(), 'telemetry-bus events');
    const server = document.servers().get('rabbitmq');
    assert.ok(server !== undefined);
    assert.equal(server.host(), '127.0.0.1:5672');
    assert.equal(server.protocol(), 'amqp');
    assert.equal(server.protocolVersion(), '0-9-1');
  });

  test('describes exactly the topology of buildTopology()', () => {
    const rebuilt: Topology = { exchanges: [], queues: [], bindings: [], exchangeBindings: [] };
    for (const channel of document.channels().all()) {
      const amqp = amqpOf(channel);
      if (amqp.is === 'routingKey') {
        assert.ok(amqp.exchange !== undefined);
        assert.equal(channel.address(), amqp.exchange.name);
        assert.deepEqual(
          {
            durable: amqp.exchange.durable,
            autoDelete: amqp.exchange.autoDelete,
            vhost: amqp.exchange.vhost,
          },
          { durable: true, autoDelete: false, vhost: '/' },
          `exchange ${amqp.exchange.name}`,
        );
        const exchangeArguments = channel.extensions().get('x-arguments')?.value<ExchangeSpec['arguments']>();
        rebuilt.exchanges.push({
          name: amqp.exchange.name,
          type: amqp.exchange.type,
          description: channel.description() ?? '',
          ...(exchangeArguments === undefined ? {} : { arguments: exchangeArguments }),
        });
        const feeds =
          channel.extensions().get('x-bindings')?.value<Array<{ exchange: string; pattern: string }>>() ?? [];
        for (const feed of feeds) {
          rebuilt.exchangeBindings.push({
            source: feed.exchange,
            destination: amqp.exchange.name,
            pattern: feed.pattern,
          });
        }
        continue;
      }
      assert.ok(amqp.queue !== undefined, `channel ${channel.id()} is neither an exchange nor a queue`);
      const { name, ...flags } = amqp.queue;
      assert.equal(channel.address(), name);
      assert.deepEqual(
        flags,
        { durable: true, exclusive: false, autoDelete: false, vhost: '/' },
        `queue ${name}`,
      );
      const queueArguments = channel.extensions().get('x-arguments')?.value<QueueSpec['arguments']>();
      assert.ok(queueArguments !== undefined, `queue ${name} has no x-arguments`);
      rebuilt.queues.push({ name, description: channel.description() ?? '', arguments: queueArguments });
      const bindings = channel.extensions().get('x-bindings')?.value<Omit<BindingSpec, 'queue'>[]>() ?? [];
      for (const binding of bindings) {
        rebuilt.bindings.push({ exchange: binding.exchange, queue: name, pattern: binding.pattern });
      }
    }
    assert.deepEqual(sortedTopology(rebuilt), sortedTopology(topology));
  });

  test('has one message per event type, whose payload is its JSON Schema', () => {
    const schemas = eventJsonSchemas();
    for (const type of EVENT_TYPES) {
      const message = document.components().messages().get(type);
      assert.ok(message !== undefined, `no message ${type}`);
      assert.equal(message.name(), type);
      assert.equal(message.contentType(), 'application/json');
      assert.deepEqual(message.bindings().get('amqp')?.value(), { messageType: type });
      assert.deepEqual(withoutParserKeys(message.payload()?.json()), schemas[type], `payload of ${type}`);
      assert.equal(message.correlationId()?.location(), '$message.payload#/correlation_id');
    }
    assert.deepEqual(
      document
        .components()
        .messages()
        .all()
        .map((message) => message.name())
        .sort(),
      [...EVENT_TYPES].sort(),
    );
  });

  test("every message's examples are valid: payload against the schema, headers against the headers", () => {
    const ajv = new Ajv({ allErrors: true, strict: true });
    addFormats.default(ajv);
    for (const type of EVENT_TYPES) {
      const message = document.components().messages().get(type);
      const validPayload = ajv.compile(eventJsonSchemas()[type]);
      const headers = withoutParserKeys(message?.headers()?.json()) as object;
      const validHeaders = ajv.compile(headers);
      const examples = message?.examples().all() ?? [];
      assert.ok(examples.length > 0, `${type} has no example`);
      for (const example of examples) {
        assert.ok(validPayload(example.payload()), `${type}: ${ajv.errorsText(validPayload.errors)}`);
        assert.ok(validHeaders(example.headers()), `${type} headers: ${ajv.errorsText(validHeaders.errors)}`);
        const payload = example.payload() as { event_id: string; event_type: string };
        assert.equal(example.headers()?.['cloudEvents:id'], payload.event_id);
        assert.equal(example.headers()?.['cloudEvents:type'], payload.event_type);
      }
    }
  });

  test('the publisher sends each event type to its exchange only', () => {
    for (const type of EVENT_TYPES) {
      for (const exchange of topology.exchanges) {
        assert.equal(
          operationMessages(document, 'send', exchange.name).includes(type),
          exchange.name === exchangeFor(type),
          `${type} sent to ${exchange.name}`,
        );
      }
    }
  });

  test('each work queue receives exactly the event types routed to it', () => {
    for (const queue of WORK_QUEUES) {
      const routed = EVENT_TYPES.filter((type) =>
        queuesFor(topology, exchangeFor(type), type).includes(queue),
      );
      assert.deepEqual(operationMessages(document, 'receive', queue).sort(), [...routed].sort(), queue);
    }
  });

  test('the dead-letter queue is consumed, and can hold any event type', () => {
    assert.deepEqual(
      operationMessages(document, 'receive', QUEUES.deadLetters).sort(),
      [...EVENT_TYPES].sort(),
    );
  });
});

test('the generated docs are up to date', () => {
  const hint = `run ${GENERATE_COMMAND}`;
  const files = renderEventDocs();
  // Paths only: a diff of a 60 kB YAML file says less than the name of the file to regenerate.
  const stale = [...files]
    .filter(([path, content]) => {
      const file = join(ROOT, path);
      return !existsSync(file) || readFileSync(file, 'utf8') !== content;
    })
    .map(([path]) => path);
  assert.deepEqual(stale, [], `generated files are out of date: ${hint}`);
  assert.deepEqual(staleFiles(files).extra, [], `files nothing generates: ${hint}`);
});
