/**
 * The process's Prometheus registry: Node.js process metrics plus whatever the parts of the system
 * register on it (the bus, the HTTP request histogram, the consumers, queue depths, dead letters). One per
 * process, never the prom-client global, so tests can build several systems side by side.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * Default metrics prom-client registers that break Prometheus naming: gauges with a `_total` suffix
 * (`promtool check metrics` rejects them). Each is the sum of the labelled gauge without the suffix
 * (`sum(nodejs_active_handles)`), so nothing is lost.
 */
const MISNAMED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

export function createPrometheusRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  return registry;
}
