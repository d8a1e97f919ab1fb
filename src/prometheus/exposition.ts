/**
 * The registry as a scraper wants it: content negotiation (Prometheus text 0.0.4, OpenMetrics 1.0.0, or
 * "not for me" so the JSON route answers), rendering, and the optional bearer token. Shared by the API's
 * Fastify plugin and the worker's plain `node:http` endpoint.
 */
import { timingSafeEqual } from 'node:crypto';
import { Registry } from 'prom-client';

export type ExpositionFormat = 'prometheus' | 'openmetrics';

export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
export const OPENMETRICS_CONTENT_TYPE = Registry.OPENMETRICS_CONTENT_TYPE;

interface AcceptEntry {
  type: string;
  subtype: string;
  q: number;
}

function parseAccept(header: string): AcceptEntry[] {
  const entries: AcceptEntry[] = [];
  for (const part of header.split(',')) {
    const [range = '', ...params] = part.split(';').map((piece) => piece.trim().toLowerCase());
    const [type, subtype] = range.split('/');
    if (type === undefined || type === '' || subtype === undefined || subtype === '') continue;
    let q = 1;
    for (const param of params) {
      const [key, value] = param.split('=').map((piece) => piece.trim());
      if (key === 'q') {
        const parsed = Number(value);
        q = Number.isFinite(parsed) ? Math.min(1, Math.max(0, parsed)) : 0;
      }
    }
    entries.push({ type, subtype, q });
  }
  return entries;
}

/**
 * The q-value the header gives a media type: that of the most specific range matching it (`a/b` over
 * `a/*` over `*\/*`, RFC 9110 §12.5.1), or undefined when none does. Parameters other than q (such as
 * `version=0.0.4`) do not take part: each format has one version here.
 */
function qualityOf(entries: AcceptEntry[], type: string, subtype: string): number | undefined {
  let best: { specificity: number; q: number } | undefined;
  for (const entry of entries) {
    let specificity: number;
    if (entry.type === type && entry.subtype === subtype) specificity = 2;
    else if (entry.type === type && entry.subtype === '*') specificity = 1;
    else if (entry.type === '*' && entry.subtype === '*') specificity = 0;
    else continue;
    if (best === undefined || specificity > best.specificity) best = { specificity, q: entry.q };
    else if (specificity === best.specificity) best.q = Math.max(best.q, entry.q);
  }
  return best?.q;
}

/**
 * What `GET /metrics` should answer with, from its `Accept` header: an exposition format when the client
 * prefers `application/openmetrics-text` or `text/plain` (what a Prometheus server sends) to
 * `application/json`, else `json` (the JSON route answers). Ties and wildcards (`*\/*`, a browser) go to
 * JSON, the route's own format.
 */
export function negotiateExposition(accept: string | undefined): ExpositionFormat | 'json' {
  if (accept === undefined || accept === '') return 'json';
  const entries = parseAccept(accept);
  const explicit = (type: string, subtype: string) =>
    entries.some((entry) => entry.type === type && (entry.subtype === subtype || entry.subtype === '*'))
      ? (qualityOf(entries, type, subtype) ?? 0)
      : 0;
  const json = qualityOf(entries, 'application', 'json') ?? 0;
  const openMetrics = explicit('application', 'openmetrics-text');
  const text = explicit('text', 'plain');
  const best = Math.max(openMetrics, text);
  if (best <= 0 || best <= json) return 'json';
  return openMetrics >= text ? 'openmetrics' : 'prometheus';
}

/** The exposition format for a client that asked for metrics explicitly: OpenMetrics when it prefers it. */
export function chooseExpositionFormat(accept: string | undefined): ExpositionFormat {
  if (accept === undefined || accept === '') return 'prometheus';
  const entries = parseAccept(accept);
  const openMetrics = qualityOf(entries, 'application', 'openmetrics-text') ?? 0;
  const text = qualityOf(entries, 'text', 'plain') ?? 0;
  return openMetrics > text ? 'openmetrics' : 'prometheus';
}

/** Renders one scrape. */
export async function renderExposition(
  registry: Registry,
  format: ExpositionFormat,
): Promise<{ contentType: string; body: string }> {
  if (format === 'prometheus') {
    return { contentType: PROMETHEUS_CONTENT_TYPE, body: await registry.metrics() };
  }
  return { contentType: OPENMETRICS_CONTENT_TYPE, body: await openMetrics(registry) };
}

/** A family as prom-client's metric objects return it (the typings leave these methods out). */
interface MetricFamily {
  name: string;
  type: string;
  [key: string]: unknown;
}
interface Collectable {
  get(): Promise<MetricFamily>;
  getForPromString?(): Promise<MetricFamily>;
}
interface FamilyWriter {
  getMetricsAsString(metric: { get(): Promise<MetricFamily> }): Promise<string>;
}

/** Formats families with prom-client's own OpenMetrics writer, never touching the shared registry. */
const OPENMETRICS_WRITER = (() => {
  const writer = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
  writer.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  return writer as unknown as FamilyWriter;
})();

/**
 * OpenMetrics text. prom-client can write it, but only by switching a whole registry's content type,
 * and its `metrics()` then renames counters in place (dropping `_total`), which would change the
 * Prometheus text of concurrent and later scrapes. So each family is read once and written through a
 * private OpenMetrics registry: a counter family is named without `_total`, its samples with it.
 */
async function openMetrics(registry: Registry): Promise<string> {
  const families = await Promise.all(
    (registry.getMetricsAsArray() as unknown as Collectable[]).map(async (metric) => {
      const family =
        metric.getForPromString === undefined ? await metric.get() : await metric.getForPromString();
      const name = family.type === 'counter' ? family.name.replace(/_total$/, '') : family.name;
      return OPENMETRICS_WRITER.getMetricsAsString({ get: async () => ({ ...family, name }) });
    }),
  );
  return `${families.join('\n')}\n# EOF\n`;
}

/**
 * Whether a scrape may read the metrics: always when no token is configured; otherwise only with
 * `Authorization: Bearer <token>` (compared in constant time).
 */
export function scrapeAllowed(authorization: string | undefined, token: string): boolean {
  if (token === '') return true;
  if (authorization === undefined) return false;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
  if (match === null) return false;
  const given = Buffer.from(match[1] as string);
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
