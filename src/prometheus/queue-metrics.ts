/**
 * Depths and consumer counts of the topology's queues as gauges, read through the {@link QueueInspector}
 * when scraped. The inspector keeps a report for a second and shares one lookup between concurrent
 * callers, so scrapes (and `/health` probes) cost the management API at most one request a second.
 *
 * The queues belong to the broker, not to a process: the API process exports them, workers do not, so a
 * dashboard sums no duplicates.
 */
import { Gauge, type Registry } from 'prom-client';
import type { QueueDepth, QueueInspector } from '../bus/queue-inspector.ts';

export function registerQueueMetrics(registry: Registry, inspector: QueueInspector): void {
  // Each gauge asks for the report; the inspector answers all four of a scrape with one lookup.
  const report = () => inspector.report();

  const byQueue = (name: string, help: string, read: (queue: QueueDepth) => number | null): Gauge<'queue'> =>
    new Gauge({
      name,
      help,
      labelNames: ['queue'],
      registers: [registry],
      async collect() {
        const { queues } = await report();
        this.reset();
        for (const queue of queues) {
          const value = queue.exists ? read(queue) : null;
          // Unknown (queue missing, broker unreachable, or not known over AMQP): no sample, not a 0.
          if (value !== null) this.set({ queue: queue.name }, value);
        }
      },
    });

  byQueue(
    'telemetry_queue_messages_ready',
    'Messages ready for delivery in each queue of the topology',
    (queue) => queue.messages_ready,
  );
  byQueue(
    'telemetry_queue_messages_unacknowledged',
    'Messages delivered to consumers and not yet acknowledged, per queue (management API only)',
    (queue) => queue.messages_unacknowledged,
  );
  byQueue('telemetry_queue_consumers', 'Consumers subscribed to each queue', (queue) => queue.consumers);
  new Gauge({
    name: 'telemetry_queue_stats_up',
    help: 'Whether the last queue inspection reached the broker (1) or failed (0)',
    registers: [registry],
    async collect() {
      this.set((await report()).error === null ? 1 : 0);
    },
  });
}
