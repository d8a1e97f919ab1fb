/**
 * The spool record of one event, and the AMQP message it becomes.
 *
 * A record is a short tab-separated header line (everything the publisher needs for routing and AMQP
 * properties) followed by the event's JSON exactly as it will be published. The publisher never parses
 * the JSON: it slices the body off the header, so sending costs no per-event parse.
 */
import type { Options } from 'amqplib';
import type { TelemetryEvent } from './event-schemas.ts';
import type { EventType } from './event-types.ts';
import { PRODUCER_HEADERS, type ProducerStamp } from './producer-sequence.ts';
import { exchangeFor } from './topology.ts';

export interface OutboundHeader {
  eventType: EventType;
  eventId: string;
  correlationId: string;
  /** When the event was emitted, in Unix milliseconds. */
  timestampMs: number;
  source: string;
  traceparent: string;
  /** The model the event is about, or '' (a header consumers may partition on). */
  modelId: string;
  /** Its place in its producer's stream (./producer-sequence.ts); absent in records of older releases. */
  stamp?: ProducerStamp | undefined;
}

/**
 * amqplib's basic.publish method fields and message properties in one object, as its `Args.publish()`
 * builds them from `publish()` options (exchange … ticket are the method's, the rest the properties'):
 * built here once per message and handed to the channel as they are (./confirm-send.ts). `headers` is a
 * plain object: `Args.publish()` would wrap it in `Object.create(headers)`, whose keys the encoder then
 * walks through the prototype chain, the slowest part of encoding a message (profiled).
 */
export interface PublishFields {
  exchange: string;
  routingKey: string;
  mandatory: true;
  immediate: false;
  ticket: undefined;
  contentType: string;
  contentEncoding: undefined;
  headers: Record<string, string | number>;
  /** 2: persistent. */
  deliveryMode: 2;
  priority: undefined;
  correlationId: string;
  replyTo: undefined;
  expiration: undefined;
  messageId: string;
  /** Whole seconds (AMQP timestamps are); the exact time is in the body and cloudEvents:time. */
  timestamp: number;
  type: string;
  userId: undefined;
  appId: string;
  clusterId: undefined;
}

/** The AMQP message of a spool record. */
export class OutboundMessage {
  constructor(
    readonly fields: PublishFields,
    readonly body: Buffer,
    /** When the event was emitted (Unix ms), for its publish latency and the loss ledger. */
    readonly timestampMs: number,
  ) {}

  get exchange(): string {
    return this.fields.exchange;
  }

  get routingKey(): string {
    return this.fields.routingKey;
  }

  /** The event's type, for counting it in the loss ledger once confirmed. */
  get eventType(): string {
    return this.fields.type;
  }

  /** The same properties as amqplib's `publish()` options, for code that publishes through it. */
  get options(): Options.Publish {
    const { fields } = this;
    return {
      persistent: true,
      mandatory: true,
      contentType: fields.contentType,
      messageId: fields.messageId,
      correlationId: fields.correlationId,
      type: fields.type,
      timestamp: fields.timestamp,
      appId: fields.appId,
      headers: fields.headers,
    };
  }
}

const NEWLINE = 0x0a;
export const APP_ID = 'telemetry-bus';

/**
 * Encodes a record. The header fields never hold a tab or newline: event types and ids are fixed forms,
 * correlation and model ids are validated to visible ASCII, and JSON text has no raw newline.
 */
export function encodeRecord(header: OutboundHeader, json: string): string {
  const stamp = header.stamp === undefined ? '' : `\t${header.stamp.producer}\t${header.stamp.sequence}`;
  return `${header.eventType}\t${header.eventId}\t${header.correlationId}\t${header.timestampMs}\t${header.source}\t${header.traceparent}\t${header.modelId}${stamp}\n${json}`;
}

/**
 * The spool record of an event, as `EventBus.emit` writes it: the header from the event's own fields (its
 * `data.model_id`, or '' when it has none), then its JSON. Throws if the event cannot be serialised.
 */
export function eventRecord(
  event: TelemetryEvent,
  traceparent: string,
  timestampMs: number,
  stamp?: ProducerStamp,
): string {
  const data = event.data as { model_id?: unknown };
  return encodeRecord(
    {
      eventType: event.event_type,
      eventId: event.event_id,
      correlationId: event.correlation_id,
      timestampMs,
      source: event.source,
      traceparent,
      modelId: typeof data.model_id === 'string' ? data.model_id : '',
      stamp,
    },
    JSON.stringify(event),
  );
}

/** `cloudEvents:source` per spool source: the same few strings for every event. */
const cloudEventSources = new Map<string, string>();
/** The last `cloudEvents:time` made: events emitted in the same millisecond share it. */
let lastTimeMs = Number.NaN;
let lastTimeText = '';

function isoTime(timestampMs: number): string {
  if (timestampMs !== lastTimeMs) {
    lastTimeMs = timestampMs;
    lastTimeText = new Date(timestampMs).toISOString();
  }
  return lastTimeText;
}

function cloudEventSource(source: string): string {
  let text = cloudEventSources.get(source);
  if (text === undefined) {
    text = `/telemetry-bus/${source}`;
    if (cloudEventSources.size < 64) cloudEventSources.set(source, text);
  }
  return text;
}

/**
 * The AMQP message of a record: properties for any AMQP client, CloudEvents attributes as headers. The
 * record's header line is split once; what is the same for every event (content type, app id, the
 * CloudEvents spec version, the source's text) is not rebuilt per message.
 */
export function toOutboundMessage(record: Buffer): OutboundMessage {
  const end = record.indexOf(NEWLINE);
  if (end < 0) throw new Error('spool record has no header line');
  const [eventType, eventId, correlationId, timestampText, source, traceparent, modelId, producer, sequence] =
    record.toString('latin1', 0, end).split('\t') as [
      EventType,
      string,
      string,
      string,
      string,
      string,
      string | undefined,
      string | undefined,
      string | undefined,
    ];
  if (modelId === undefined) throw new Error('spool record header is incomplete');
  const timestampMs = Number(timestampText);
  const headers: Record<string, string | number> = {
    'cloudEvents:specversion': '1.0',
    'cloudEvents:id': eventId,
    'cloudEvents:type': eventType,
    'cloudEvents:source': cloudEventSource(source),
    'cloudEvents:time': isoTime(timestampMs),
    traceparent,
  };
  if (modelId !== '') headers.model_id = modelId;
  // Records of releases before producer stamps have none (./producer-sequence.ts).
  if (producer !== undefined && sequence !== undefined) {
    headers[PRODUCER_HEADERS.producer] = producer;
    headers[PRODUCER_HEADERS.sequence] = Number(sequence);
  }
  const fields: PublishFields = {
    exchange: exchangeFor(eventType),
    routingKey: eventType,
    mandatory: true,
    immediate: false,
    ticket: undefined,
    contentType: 'application/json',
    contentEncoding: undefined,
    headers,
    deliveryMode: 2,
    priority: undefined,
    correlationId,
    replyTo: undefined,
    expiration: undefined,
    messageId: eventId,
    timestamp: Math.floor(timestampMs / 1000),
    type: eventType,
    userId: undefined,
    appId: APP_ID,
    clusterId: undefined,
  };
  return new OutboundMessage(fields, record.subarray(end + 1), timestampMs);
}
