/**
 * The service's own latency histograms over one phase, read from its Prometheus expositions before and
 * after (prometheus-histogram.ts):
 * - publish latency, emit → broker confirm: `telemetry_publish_latency_seconds` of the API;
 * - event age per consumer, the event's timestamp → the commit that applied it:
 *   `telemetry_consumer_event_age_seconds{consumer}` of the worker.
 * A build without them reads as null ("not measured"). Read the end after the phase has settled (every
 * event confirmed and applied), so the phase's last events are in it.
 */
import {
  type HistogramReading,
  histogramDelta,
  type LatencyPercentiles,
  percentilesMs,
  readHistogram,
} from './prometheus-histogram.ts';

export const PUBLISH_LATENCY = 'telemetry_publish_latency_seconds';
export const EVENT_AGE = 'telemetry_consumer_event_age_seconds';

interface Source {
  prometheus(): Promise<string>;
}

export interface ServiceLatencies {
  /** Emit → confirm over the phase (ms); null when the API has no such histogram (or no API). */
  publishLatencyMs: LatencyPercentiles | null;
  /** Per consumer, event timestamp → commit (ms); null when the worker has no such histogram. */
  eventAgeMs: Record<string, LatencyPercentiles> | null;
}

async function scrape(source: Source | undefined, name: string, groupBy?: string) {
  if (source === undefined) return undefined;
  try {
    const readings = readHistogram(await source.prometheus(), name, groupBy);
    return readings.size === 0 ? undefined : readings;
  } catch {
    return undefined;
  }
}

export class ServiceHistograms {
  readonly #api: Source | undefined;
  readonly #worker: Source | undefined;
  #publish: Map<string, HistogramReading> | undefined;
  #age: Map<string, HistogramReading> | undefined;

  constructor(sources: { api?: Source; worker?: Source }) {
    this.#api = sources.api;
    this.#worker = sources.worker;
  }

  async start(): Promise<void> {
    this.#publish = await scrape(this.#api, PUBLISH_LATENCY);
    this.#age = await scrape(this.#worker, EVENT_AGE, 'consumer');
  }

  async stop(): Promise<ServiceLatencies> {
    const publish = await scrape(this.#api, PUBLISH_LATENCY);
    const age = await scrape(this.#worker, EVENT_AGE, 'consumer');
    const total = publish?.get('');
    return {
      publishLatencyMs:
        total === undefined ? null : percentilesMs(histogramDelta(total, this.#publish?.get(''))),
      eventAgeMs:
        age === undefined
          ? null
          : Object.fromEntries(
              [...age.entries()]
                .sort(([a], [b]) => a.localeCompare(b))
                .map(([consumer, reading]) => [
                  consumer,
                  percentilesMs(histogramDelta(reading, this.#age?.get(consumer))),
                ]),
            ),
    };
  }
}

/** The consumer whose p95 event age is the highest (the slowest), or undefined. */
export function slowestConsumer(
  ages: Record<string, LatencyPercentiles> | null,
): { consumer: string; age: LatencyPercentiles } | undefined {
  let slowest: { consumer: string; age: LatencyPercentiles } | undefined;
  for (const [consumer, age] of Object.entries(ages ?? {})) {
    if (age.count === 0) continue;
    if (slowest === undefined || age.p95 > slowest.age.p95) slowest = { consumer, age };
  }
  return slowest;
}
