/**
 * The models the API benchmarks seed: a spread of vendors, tiers, context windows and prices, with ids
 * that contain a '/' like real ones ('openai/gpt-4o'), so reads go through the percent-encoded path.
 */
import { CAPABILITY_TIER_NAMES as TIERS } from '../../src/registry/capability-tier.ts';
import { interruptible, throwIfInterrupted } from './settings.ts';

const VENDORS = ['OpenAI', 'Anthropic', 'Google', 'Meta', 'Mistral', 'Cohere', 'DeepSeek', 'Alibaba'];
const CONTEXT_WINDOWS = [8_192, 32_768, 128_000, 200_000, 1_000_000];
const nth = <T>(values: readonly T[], n: number) => values[n % values.length] as T;

/** Model `index` (the events the benchmarks generate name models 0–999 with these attributes too). */
export function seedModel(index: number) {
  const vendor = nth(VENDORS, index);
  const costIn = Math.round(((index % 50) * 0.37 + 0.1) * 100) / 100;
  return {
    model_id: `${vendor.toLowerCase()}/bench-${String(index).padStart(5, '0')}`,
    vendor_id: vendor,
    capability_tier: nth(TIERS, index),
    context_window: nth(CONTEXT_WINDOWS, index),
    cost_in_per_mil: costIn,
    cost_out_per_mil: Math.round(costIn * 4 * 100) / 100,
    function_call_support: index % 3 !== 0,
    is_active: index % 10 !== 0,
  };
}

/** The body of the `n`th model a benchmark registers under load, with id `id`. */
export const createdModel = (id: string, n: number) => ({
  model_id: id,
  vendor_id: 'BenchVendor',
  capability_tier: nth(TIERS, n),
  context_window: nth(CONTEXT_WINDOWS, n),
  cost_in_per_mil: 1.5,
  cost_out_per_mil: 6,
  function_call_support: n % 2 === 0,
});

/** Registers `count` models over HTTP with 16 requests in flight; resolves with their ids, sorted. */
export async function seedModels(baseUrl: string, writerKey: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      throwIfInterrupted();
      const model = seedModel(next++);
      const response = await fetch(`${baseUrl}/models`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': writerKey },
        body: JSON.stringify(model),
      });
      if (response.status !== 201) {
        throw new Error(`seeding ${model.model_id}: HTTP ${response.status} ${await response.text()}`);
      }
      ids.push(model.model_id);
    }
  };
  await interruptible(Promise.all(Array.from({ length: 16 }, worker)));
  return ids.sort();
}
