-- Up Migration

-- Real-time metrics, written by the metrics consumer (metrics.updates: every event) and read by
-- GET /metrics. Three kinds of rows:
--   metrics_rollups        counts and latency histograms per time bucket and per key (event type, route,
--                          vendor, tier, status class, error type): what filters and breakdowns read;
--   metrics_rollup_totals  the same per time bucket with no key: what unfiltered series and peaks read;
--   metrics_events         the raw applied events, kept for METRICS_RAW_RETENTION_DAYS.
-- Each rollup is kept at three granularities, written by the same transaction: '1m' (minute), '1h' and
-- '1d' (UTC). A range is read as whole days, then whole hours, then minutes only at its ragged ends, so
-- 30 days read ~30 day rows per key instead of 43,200 minute rows, and stay exact (every tier is a sum of
-- the same events). A bucket starts at a multiple of its length since the epoch (UTC); the CHECKs use the
-- epoch, which (unlike date_trunc) does not depend on the session's TimeZone.
--
-- Latency histograms are log-linear (src/log-linear-histogram.ts: 64 buckets per power of two,
-- ≤ 0.78 % relative error), stored sparse as bigint[] of `bucket_index << 40 | count`, non-empty buckets
-- only, in index order. Text columns use '' for "none" so they can be part of a primary key.

-- Adds two packed histograms: what an upsert does with the histogram of a batch. STRICT is not used: a
-- NULL side is treated as empty.
CREATE FUNCTION metrics_histogram_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg((k << 40) | c ORDER BY k), '{}')
  FROM (
    SELECT e >> 40 AS k, sum(e & 1099511627775)::bigint AS c
    FROM unnest(coalesce(a, '{}') || coalesce(b, '{}')) AS e
    GROUP BY 1
  ) AS merged
$$;

CREATE TABLE metrics_rollups (
  granularity        text COLLATE "C" NOT NULL CHECK (granularity IN ('1m', '1h', '1d')),
  bucket_start       timestamptz NOT NULL,
  event_type         text COLLATE "C" NOT NULL,
  method             text COLLATE "C" NOT NULL,
  -- The route template (metadata.route); '' when no route matched (a 404 for an unknown path).
  route              text COLLATE "C" NOT NULL,
  -- The model's vendor and tier (model events), or the filter's (filter.executed with vendor_id /
  -- capability_tier); '' otherwise.
  vendor_id          text COLLATE "C" NOT NULL,
  capability_tier    text COLLATE "C" NOT NULL,
  -- response_code / 100: 1 … 5.
  status_class       smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
  -- The error code of an api.error (error.type); '' otherwise.
  error_type         text COLLATE "C" NOT NULL,
  requests           bigint NOT NULL CHECK (requests > 0),
  -- Reads served from the API's cache (metadata.cache_hit true), and reads that could have been (false).
  cache_hits         bigint NOT NULL CHECK (cache_hits >= 0),
  cache_misses       bigint NOT NULL CHECK (cache_misses >= 0),
  -- metadata.request_duration_ms, and event timestamp → applied by the consumer, in ms.
  request_latency    bigint[] NOT NULL,
  processing_latency bigint[] NOT NULL,
  CHECK (cache_hits + cache_misses <= requests),
  CHECK (extract(epoch FROM bucket_start)::bigint
         % CASE granularity WHEN '1m' THEN 60 WHEN '1h' THEN 3600 ELSE 86400 END = 0),
  PRIMARY KEY (granularity, bucket_start, event_type, method, route, vendor_id, capability_tier,
               status_class, error_type)
);

CREATE TABLE metrics_rollup_totals (
  granularity        text COLLATE "C" NOT NULL CHECK (granularity IN ('1m', '1h', '1d')),
  bucket_start       timestamptz NOT NULL,
  requests           bigint NOT NULL CHECK (requests > 0),
  -- Responses with a 4xx or 5xx status.
  errors             bigint NOT NULL CHECK (errors BETWEEN 0 AND requests),
  request_latency    bigint[] NOT NULL,
  processing_latency bigint[] NOT NULL,
  CHECK (extract(epoch FROM bucket_start)::bigint
         % CASE granularity WHEN '1m' THEN 60 WHEN '1h' THEN 3600 ELSE 86400 END = 0),
  PRIMARY KEY (granularity, bucket_start)
);

-- The busiest minute of a range: the minutes ordered by their requests.
CREATE INDEX metrics_rollup_totals_busiest ON metrics_rollup_totals (granularity, requests DESC, bucket_start);

-- The raw applied events, with the fields the rollups are made of. No primary key: the consumer's
-- transaction also records the event id in consumer_applied_events, which already refuses a second
-- copy, and a unique index on a random uuid would cost every insert a random index page. BRIN on the
-- timestamp: events arrive roughly in time order, and the index only serves the pruning by age.
CREATE TABLE metrics_events (
  event_id            uuid NOT NULL,
  event_type          text COLLATE "C" NOT NULL,
  occurred_at         timestamptz NOT NULL,
  applied_at          timestamptz NOT NULL,
  method              text COLLATE "C" NOT NULL,
  route               text COLLATE "C",
  model_id            text COLLATE "C",
  vendor_id           text COLLATE "C",
  capability_tier     text COLLATE "C",
  response_code       smallint NOT NULL,
  error_type          text COLLATE "C",
  cache_hit           boolean,
  request_duration_ms double precision NOT NULL,
  processing_ms       double precision NOT NULL
);

CREATE INDEX metrics_events_occurred_at ON metrics_events USING brin (occurred_at);

-- Down Migration

DROP TABLE metrics_events;
DROP TABLE metrics_rollup_totals;
DROP TABLE metrics_rollups;
DROP FUNCTION metrics_histogram_add(bigint[], bigint[]);
