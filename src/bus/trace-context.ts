/**
 * W3C trace context for events: an event continues the trace of the request that caused it (when the
 * request came with a valid `traceparent`) as a new span, so a trace can follow a request onto the bus.
 */
import { randomUUID } from 'node:crypto';
import { isSpanContextValid } from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';

function randomHex(length: number): string {
  // randomUUID draws from a pooled entropy buffer: far cheaper per call than randomBytes.
  return randomUUID().replaceAll('-', '').slice(0, length);
}

/** The `traceparent` of an event: the incoming trace (if valid, and sampled flags kept), a new span. */
export function childTraceparent(incoming: string | undefined): string {
  const parent = incoming === undefined ? null : parseTraceParent(incoming);
  if (parent !== null && isSpanContextValid(parent)) {
    const flags = (parent.traceFlags & 0xff).toString(16).padStart(2, '0');
    return `00-${parent.traceId}-${randomHex(16)}-${flags}`;
  }
  return `00-${randomHex(32)}-${randomHex(16)}-01`;
}
