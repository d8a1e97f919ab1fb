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

export interface KnownVendorsOptions {
  /** How long the vendors read from the registry are trusted, in ms. @default 5000 */
  refreshMs?: number;
}

/**
 * The registry's vendors, read again when older than `refreshMs`, and before a batch that names a vendor
 * it does not know — which a model registered a moment ago can be — at most once a second, so that a
 * flood of made-up vendors costs one read a second.
 */
export class KnownVendors {
  readonly #refreshMs: number;
  #vendors: ReadonlySet<string> = new Set();
  #readAt = Number.NEGATIVE_INFINITY;

  constructor(options: KnownVendorsOptions = {}) {
    this.#refreshMs = options.refreshMs ?? 5000;
  }

  /**
   * Reads the registry's vendors if due: the trusted time passed, or one of `wanted` (the vendors a batch
   * is about to record) is unknown and the last read is a second old.
   */
  async refresh(pool: pg.Pool, wanted: Iterable<string> = [], now: number = Date.now()): Promise<void> {
    const age = now - this.#readAt;
    if (age < this.#refreshMs) {
      if (age < 1000) return;
      let unknown = false;
      for (const vendor of wanted) {
        if (vendor !== '' && !this.#vendors.has(vendor)) {
          unknown = true;
          break;
        }
      }
      if (!unknown) return;
    }
    const { rows } = await pool.query<{ vendor_id: string }>({
      name: 'dimensions.vendors',
      text: 'SELECT DISTINCT vendor_id FROM models',
    });
    this.#vendors = new Set(rows.map((row) => row.vendor_id));
    this.#readAt = now;
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
