/**
 * What the consumers record as dimensions (a key part of a rollup or analytics row): only values that
 * exist — vendors of the registry, the capability tiers, the API's route templates. Anything else is
 * folded into {@link OTHER}, so a client cannot make the tables (and GET /metrics) grow by sending
 * values: 40,000 distinct `vendor_id` filter values used to add 40,000 rollup rows and a 1.5 MB answer.
 *
 * A model event's vendor is the model's own, from the registry, so it is known by construction; what a
 * client chooses freely is a filter's values (`filter.executed`). The route of an event is the template
 * the router matched, never the URL, so it is bounded by the API; the list below still guards the
 * tables against events published by anything else.
 */
import type pg from 'pg';
import { CAPABILITY_TIER_NAMES } from '../registry/capability-tier.ts';

/**
 * The folded value. Not a valid vendor id (those start with a letter or digit), so it never stands for
 * a real vendor.
 */
export const OTHER = '(other)';

/**
 * The API's route templates (src/http/routes), as events carry them: a test holds the app to this list.
 * The API's own wildcard (/docs/*) is one template.
 */
export const API_ROUTES: ReadonlySet<string> = new Set([
  '/analytics/filters',
  '/analytics/models/:model_id',
  '/analytics/models/popular',
  '/audit',
  '/audit/keyless',
  '/dashboard',
  '/dashboard/assets/dashboard.css',
  '/dashboard/assets/dashboard.js',
  '/dashboard/assets/index.html',
  '/dashboard/stream',
  '/dashboard/vendor/uPlot.iife.min.js',
  '/dashboard/vendor/uPlot.min.css',
  '/dlq',
  '/dlq/:id',
  '/dlq/replay',
  '/docs',
  '/docs/',
  '/docs/*',
  '/docs/json',
  '/docs/static/index.html',
  '/docs/static/swagger-initializer.js',
  '/docs/yaml',
  '/health',
  '/livez',
  '/metrics',
  '/metrics/prometheus',
  '/models',
  '/models/:model_id',
  '/models/:model_id/deactivate',
  '/readyz',
  '/schemas/events',
  '/schemas/events/:event_type',
  '/telemetry/ledger',
  '/telemetry/selftest',
]);

const TIERS: ReadonlySet<string> = new Set(CAPABILITY_TIER_NAMES);

/** A route template as recorded: '' (no route matched) and the API's own as they are, others folded. */
export const routeDimension = (route: string): string =>
  route === '' || API_ROUTES.has(route) ? route : OTHER;

/** A tier as recorded: '' and the known tiers as they are, others folded. */
export const tierDimension = (tier: string): string => (tier === '' || TIERS.has(tier) ? tier : OTHER);

/**
 * The registry's vendors this process has seen. Before a batch is written, the vendors its filters name
 * that are not known yet are looked up (one indexed query for the batch, not one per event): a vendor
 * registered a moment ago is found, a made-up one is not and is folded. Models are never deleted, so a
 * vendor once found stays known.
 */
export class KnownVendors {
  readonly #vendors = new Set<string>();

  /** Looks up the vendors of `wanted` not known yet. */
  async refresh(pool: pg.Pool, wanted: Iterable<string>): Promise<void> {
    const unknown = new Set<string>();
    for (const vendor of wanted) if (vendor !== '' && !this.#vendors.has(vendor)) unknown.add(vendor);
    if (unknown.size === 0) return;
    const { rows } = await pool.query<{ vendor_id: string }>({
      name: 'dimensions.vendors',
      text: 'SELECT DISTINCT vendor_id FROM models WHERE vendor_id = ANY($1::text[])',
      values: [[...unknown]],
    });
    for (const row of rows) this.#vendors.add(row.vendor_id);
  }

  /** A filter's vendor as recorded: '' and the registry's as they are, others folded. */
  dimension(vendor: string): string {
    return vendor === '' || this.#vendors.has(vendor) ? vendor : OTHER;
  }
}

/** The vendors the filters of `deliveries` name: what {@link KnownVendors.refresh} is asked about. */
export function filterVendors(events: Iterable<{ event_type: string; data: unknown } | undefined>): string[] {
  const vendors: string[] = [];
  for (const event of events) {
    if (event?.event_type !== 'filter.executed') continue;
    const vendor = (event.data as { filters?: { vendor_id?: unknown } }).filters?.vendor_id;
    if (typeof vendor === 'string') vendors.push(vendor);
  }
  return vendors;
}
