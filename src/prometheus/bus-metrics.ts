/**
 * The bus's own telemetry in a prom-client registry. The bus keeps plain numbers (an `inc()` on the
 * request path would cost more than the rest of `emit()`); these metrics read them when scraped.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { registerHistogramFamily } from '../bucket-histogram.ts';
import type { EventBus } from '../bus/event-bus.ts';
import type { BrokerState } from '../bus/spool-publisher.ts';

const BROKER_STATES: BrokerState[] = ['connecting', 'connected', 'blocked', 'disconnected', 'stopped'];

/** A counter whose value is read from `read()` at scrape time (absolute, never decreasing). */
function readCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  read: () => number | Record<string, number>,
  labelNames: L[] = [],
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      const value = read();
      this.reset();
      if (typeof value === 'number') this.inc(value);
      else
        for (const [label, count] of Object.entries(value))
          this.inc({ [labelNames[0] as L]: label } as Partial<Record<L, string>>, count);
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

export function registerBusMetrics(registry: Registry, bus: EventBus): void {
  const status = () => bus.status();
  readCounter(
    registry,
    'telemetry_events_emitted_total',
    'Events emitted by this process (kept or dropped), by event type',
    () => status().emittedByType,
    ['event_type'],
  );
  readCounter(
    registry,
    'telemetry_events_dropped_total',
    'Events not kept, by reason (spool_full, write_error, invalid_event)',
    () => status().dropped,
    ['reason'],
  );
  const counter = (
    name: string,
    help: string,
    key: keyof ReturnType<EventBus['status']>['publisher']['counters'],
  ) => readCounter(registry, name, help, () => status().publisher.counters[key]);
  counter(
    'telemetry_events_confirmed_total',
    'Messages confirmed by RabbitMQ (resent copies included)',
    'confirmed',
  );
  counter('telemetry_events_returned_total', 'Messages RabbitMQ could not route to any queue', 'returned');
  counter('telemetry_events_nacked_total', 'Messages RabbitMQ refused (then resent)', 'nacked');
  counter(
    'telemetry_events_resent_total',
    'Messages published again after a nack, time-out or lost connection',
    'resent',
  );
  counter(
    'telemetry_publisher_confirm_timeouts_total',
    'Confirm time-outs that made the publisher reconnect',
    'confirmTimeouts',
  );
  counter(
    'telemetry_publisher_connects_total',
    'Successful connections of the publisher to RabbitMQ',
    'connects',
  );
  counter(
    'telemetry_publisher_connect_failures_total',
    'Failed connection attempts of the publisher',
    'connectFailures',
  );
  readCounter(
    registry,
    'telemetry_publisher_thread_restarts_total',
    'Restarts of the publisher thread after a crash',
    () => status().publisherThread?.restarts ?? 0,
  );
  readCounter(
    registry,
    'telemetry_spool_torn_records_total',
    'Torn tail records skipped when the spool was opened',
    () => status().spool.tornRecords,
  );
  readCounter(
    registry,
    'telemetry_spool_corrupt_records_total',
    'Spool records skipped for a bad checksum',
    () => status().spool.corruptRecords,
  );
  readGauge(
    registry,
    'telemetry_spool_unpublished_events',
    'Events in the spool not yet confirmed by RabbitMQ',
    () => status().spool.unconfirmed,
  );
  readGauge(
    registry,
    'telemetry_publisher_unconfirmed_events',
    'Messages published and awaiting a confirm',
    () => status().publisher.unconfirmed,
  );
  readGauge(
    registry,
    'telemetry_spool_bytes',
    'Size of the spool on disk, in bytes',
    () => status().spool.bytes,
  );
  readGauge(
    registry,
    'telemetry_spool_segments',
    'Segment files of the spool',
    () => status().spool.segments,
  );
  registerHistogramFamily(registry, {
    name: 'telemetry_publish_latency_seconds',
    help: 'Time from an event being emitted to RabbitMQ confirming its message (resent copies included)',
    labelNames: [],
    series: () => [{ labels: {}, histogram: bus.publishLatency.histogram }],
  });
  new Gauge({
    name: 'telemetry_broker_connection_state',
    help: 'The publisher connection state: 1 for the current state, 0 for the others',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const current = status().publisher.state;
      for (const state of BROKER_STATES) this.set({ state }, state === current ? 1 : 0);
    },
  });
}
