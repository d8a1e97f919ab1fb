/**
 * The process's Prometheus registry: Node.js process metrics plus whatever the parts of the system
 * register on it (the bus now; the request histogram and consumers later). One per process, never the
 * prom-client global, so tests can build several systems side by side.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createPrometheusRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}
