-- Up Migration

-- Compaction of the metrics rollups (src/consumers/metrics/metrics-compactor.ts). Until now the consumer
-- upserted every batch into the minute, hour and day rows; the hour and day rows are hot (every batch of
-- a day hits the same day rows) and wide (a day's histogram holds hundreds of buckets), which made them
-- most of the consumer's cost. From now on the consumer upserts minute rows, and a compactor in the same
-- process adds closed minutes into the hour and day rows behind a watermark:
--
--   every minute before `watermark` is counted in its hour and day rows, and no minute from it on is.
--
-- The compactor moves the watermark and adds the minutes it passes in one transaction; an event for a
-- minute already behind it (a replay of an old event, a consumer more than the compaction lag behind)
-- is added to the minute, hour and day rows by the consumer itself. The consumer reads the watermark
-- FOR SHARE and the compactor FOR UPDATE, so neither can move between the other's read and commit.
-- GET /metrics reads hour and day rows only for periods wholly before the watermark, and minutes after.
--
-- On an existing database every minute already counts in its hours and days (the old consumer wrote
-- all three): the watermark starts after the last minute written. On a new one it starts at the epoch.
-- Stop the old metrics consumers before migrating: one still running would add minutes after the
-- watermark to the hours and days, which the compactor would then add a second time.
CREATE TABLE metrics_compaction (
  -- One row.
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  watermark timestamptz NOT NULL CHECK (extract(epoch FROM watermark)::bigint % 60 = 0)
);

INSERT INTO metrics_compaction (watermark)
SELECT coalesce(max(last_minute) + interval '1 minute', timestamptz 'epoch')
FROM (
  SELECT max(bucket_start) AS last_minute FROM metrics_rollups WHERE granularity = '1m'
  UNION ALL
  SELECT max(bucket_start) FROM metrics_rollup_totals WHERE granularity = '1m'
) AS last;

-- A counter per UTC day, raised by every transaction that changes that day's rows behind the watermark
-- (the consumer adding late events): GET /metrics caches what it read of closed periods in memory with
-- the revision of their day, and reads them again when it changed. Days that never had a late event
-- have no row (revision 0).
CREATE TABLE metrics_revisions (
  day      timestamptz PRIMARY KEY CHECK (extract(epoch FROM day)::bigint % 86400 = 0),
  revision bigint NOT NULL CHECK (revision > 0)
);

-- The requests of each minute of an hour, in the hour rows (60 counts, minute 0 first; NULL in minute and
-- day rows): the busiest minute of a closed hour or day is then read from its hour rows, instead of from
-- every minute row of it — a day of minute rows, each carrying its histograms, is most of a day's heap.
-- Filled by whoever adds minutes into an hour: the compactor, the consumer for a late event, and here
-- for the existing hours (from their minutes; a minute already pruned counts 0).
ALTER TABLE metrics_rollups ADD COLUMN minute_requests integer[];
ALTER TABLE metrics_rollup_totals ADD COLUMN minute_requests integer[];

UPDATE metrics_rollups AS h
SET minute_requests = ARRAY(
  SELECT coalesce(m.requests, 0)::integer
  FROM generate_series(0, 59) AS s
  LEFT JOIN metrics_rollups AS m
    ON m.granularity = '1m' AND m.bucket_start = h.bucket_start + s * interval '1 minute'
   AND m.event_type = h.event_type AND m.method = h.method AND m.route = h.route
   AND m.vendor_id = h.vendor_id AND m.capability_tier = h.capability_tier
   AND m.status_class = h.status_class AND m.error_type = h.error_type
  ORDER BY s)
WHERE h.granularity = '1h';

UPDATE metrics_rollup_totals AS h
SET minute_requests = ARRAY(
  SELECT coalesce(m.requests, 0)::integer
  FROM generate_series(0, 59) AS s
  LEFT JOIN metrics_rollup_totals AS m
    ON m.granularity = '1m' AND m.bucket_start = h.bucket_start + s * interval '1 minute'
  ORDER BY s)
WHERE h.granularity = '1h';

-- An hour row without them cannot be written (so neither by a consumer of the previous version).
ALTER TABLE metrics_rollups ADD CONSTRAINT metrics_rollups_minute_requests
  CHECK ((granularity = '1h') = (minute_requests IS NOT NULL AND cardinality(minute_requests) = 60));
ALTER TABLE metrics_rollup_totals ADD CONSTRAINT metrics_rollup_totals_minute_requests
  CHECK ((granularity = '1h') = (minute_requests IS NOT NULL AND cardinality(minute_requests) = 60));

-- Down Migration

-- The hour and day rows then lack the minutes from the watermark on, which the old consumer does not
-- know: run the compactor up to now (MetricsCompactor.compact) with the consumers stopped first.

ALTER TABLE metrics_rollup_totals DROP COLUMN minute_requests;
ALTER TABLE metrics_rollups DROP COLUMN minute_requests;
DROP TABLE metrics_revisions;
DROP TABLE metrics_compaction;
