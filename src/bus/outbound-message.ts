/**
 * The spool record of one event, and the AMQP message it becomes.
 *
 * A record is a short tab-separated header line (everything the publisher needs for routing and AMQP
 * properties) followed by the event's JSON exactly as it will be published. The publisher never parses
 * the JSON: it slices the body off the header, so sending costs no per-event parse.
 */
import type { Options } from 'amqplib';
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

export interface OutboundMessage {
  exchange: string;
  routingKey: string;
  body: Buffer;
  options: Options.Publish;
  /** The event's type and time (epoch ms), for counting it in the loss ledger once confirmed. */
  eventType: string;
  timestampMs: number;
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

export function decodeRecord(record: Buffer): { header: OutboundHeader; body: Buffer } {
  const end = record.indexOf(NEWLINE);
  if (end < 0) throw new Error('spool record has no header line');
  const [eventType, eventId, correlationId, timestampMs, source, traceparent, modelId, producer, sequence] =
    record.toString('latin1', 0, end).split('\t');
  if (modelId === undefined) throw new Error('spool record header is incomplete');
  return {
    header: {
      eventType: eventType as EventType,
      eventId: eventId as string,
      correlationId: correlationId as string,
      timestampMs: Number(timestampMs),
      source: source as string,
      traceparent: traceparent as string,
      modelId,
      stamp:
        producer === undefined || sequence === undefined
          ? undefined
          : { producer, sequence: Number(sequence) },
    },
    body: record.subarray(end + 1),
  };
}

/** The AMQP message of a record: properties for any AMQP client, CloudEvents attributes as headers. */
export function toOutboundMessage(record: Buffer): OutboundMessage {
  const { header, body } = decodeRecord(record);
  const headers: Record<string, string | number> = {
    'cloudEvents:specversion': '1.0',
    'cloudEvents:id': header.eventId,
    'cloudEvents:type': header.eventType,
    'cloudEvents:source': `/telemetry-bus/${header.source}`,
    'cloudEvents:time': new Date(header.timestampMs).toISOString(),
    traceparent: header.traceparent,
  };
  if (header.modelId !== '') headers.model_id = header.modelId;
  if (header.stamp !== undefined) {
    headers[PRODUCER_HEADERS.producer] = header.stamp.producer;
    headers[PRODUCER_HEADERS.sequence] = header.stamp.sequence;
  }
  return {
    exchange: exchangeFor(header.eventType),
    routingKey: header.eventType,
    body,
    eventType: header.eventType,
    timestampMs: header.timestampMs,
    options: {
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      messageId: header.eventId,
      correlationId: header.correlationId,
      type: header.eventType,
      // AMQP timestamps are whole seconds; the exact time is in the body and cloudEvents:time.
      timestamp: Math.floor(header.timestampMs / 1000),
      appId: APP_ID,
      headers,
    },
  };
}
