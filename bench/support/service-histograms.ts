/**
 * The service's own latency histograms over one phase, read from its Prometheus expositions before and
 * after (prometheus-histogram.ts): publish latency (emit → broker confirm,
 * `telemetry_publish_latency_seconds` of the API) and event age per consumer (the event's timestamp → the
 * commit that applied it, `telemetry_consumer_event_age_seconds{consumer}` of the worker). A build without
 * them reads as null ("not measured"). Read the end once the phase has settled, so its last events count.
 */
import {
  histogramDelta,
  type LatencyPercentiles,
  percentilesMs,
  readHistogram,
} from './prometheus-histogram.ts';

type Source = { prometheus(): Promise<string> } | undefined;

export interface ServiceLatencies {
  /** Emit → confirm over the phase (ms). */
  publishLatencyMs: LatencyPercentiles | null;
  /** Per consumer, event timestamp → commit (ms). */
  eventAgeMs: Record<string, LatencyPercentiles> | null;
}

async function scrape(source: Source, name: string, groupBy?: string) {
  const readings = await source?.prometheus().then(
    (text) => readHistogram(text, name, groupBy),
    () => undefined,
  );
  return readings?.size ? readings : undefined;
}

const read = async (api: Source, worker: Source) => ({
  publish: (await scrape(api, 'telemetry_publish_latency_seconds'))?.get(''),
  age: await scrape(worker, 'telemetry_consumer_event_age_seconds', 'consumer'),
});

/** Reads the histograms now; the function it resolves with gives what they observed since. */
export async function serviceHistograms(
  api: Source,
  worker: Source,
): Promise<() => Promise<ServiceLatencies>> {
  const before = await read(api, worker);
  return async () => {
    const { publish, age } = await read(api, worker);
    const ages = [...(age ?? new Map()).entries()].sort(([a], [b]) => a.localeCompare(b));
    return {
      publishLatencyMs: publish === undefined ? null : percentilesMs(histogramDelta(publish, before.publish)),
      eventAgeMs:
        age === undefined
          ? null
          : Object.fromEntries(
              ages.map(([name, reading]) => [
                name,
                percentilesMs(histogramDelta(reading, before.age?.get(name))),
              ]),
            ),
    };
  };
}

/** The consumer whose p95 event age is the highest (the slowest), or undefined. */
export function slowestConsumer(ages: Record<string, LatencyPercentiles> | null | undefined) {
  const measured = Object.entries(ages ?? {}).filter(([, age]) => age.count > 0);
  const [consumer, age] = measured.sort(([, a], [, b]) => b.p95 - a.p95)[0] ?? [];
  return consumer === undefined || age === undefined ? undefined : { consumer, age };
}
