-- Up Migration

-- Rollups off the consumer's path (src/consumers/metrics/): a batch of the metrics consumer appends its
-- rollup rows, per minute and key, to metrics_rollup_deltas — plain inserts, no index, no histogram
-- merged — and the compactor moves them into the minute rows (metrics_rollups, metrics_rollup_totals)
-- every second or so, merging each key's histograms once per run instead of once per batch. GET /metrics
-- reads the deltas not yet moved with the minutes after the compaction watermark, so it stays exact.
--
-- Every delta is for a minute at or after the watermark: the consumer checks it in its statement, under
-- the watermark row's FOR SHARE lock (metrics_deltas_check), and writes an event of a minute behind the
-- watermark (a late one) straight into its minute, hour and day rows as before; the compactor moves the
-- deltas of the minutes it closes before moving the watermark past them.
CREATE TABLE metrics_rollup_deltas (
  bucket_start       timestamptz NOT NULL CHECK (extract(epoch FROM bucket_start)::bigint % 60 = 0),
  event_type         text COLLATE "C" NOT NULL,
  method             text COLLATE "C" NOT NULL,
  route              text COLLATE "C" NOT NULL,
  vendor_id          text COLLATE "C" NOT NULL,
  capability_tier    text COLLATE "C" NOT NULL,
  status_class       smallint NOT NULL CHECK (status_class BETWEEN 1 AND 5),
  error_type         text COLLATE "C" NOT NULL,
  requests           bigint NOT NULL CHECK (requests > 0),
  cache_hits         bigint NOT NULL CHECK (cache_hits >= 0),
  cache_misses       bigint NOT NULL CHECK (cache_misses >= 0),
  request_latency    bigint[] NOT NULL,
  processing_latency bigint[] NOT NULL
);

-- Fails the consumer's statement (undoing it) when one of its deltas is for a minute the watermark has
-- passed since the consumer read it; locks the watermark FOR SHARE until the statement ends, so the
-- compactor cannot pass the batch's minutes before it commits. SQLSTATE 40001: the consumer reads the
-- watermark again and retries.
CREATE FUNCTION metrics_deltas_check(first_minute timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  mark timestamptz;
BEGIN
  SELECT watermark INTO mark FROM metrics_compaction FOR SHARE;
  IF first_minute IS NOT NULL AND first_minute < mark THEN
    RAISE EXCEPTION 'metrics delta for % behind the compaction watermark %', first_minute, mark
      USING ERRCODE = 'serialization_failure';
  END IF;
END
$$;

-- The raw events, partitioned by day of their timestamp (UTC): retention drops a day's partition instead
-- of deleting its rows, and without an index an insert writes the heap alone (the producer streams
-- de-duplicate; nothing reads a single event back). Events outside the days that have a partition (older
-- than retention, or far ahead) go to metrics_events_other, pruned row by row; metrics_events_partitions
-- makes the partitions of the coming days ahead of them.
CREATE TABLE metrics_events_partitioned (
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
) PARTITION BY RANGE (occurred_at);

CREATE TABLE metrics_events_other PARTITION OF metrics_events_partitioned DEFAULT;
CREATE INDEX metrics_events_other_occurred_at ON metrics_events_other USING brin (occurred_at);

-- The existing rows, kept: all first in metrics_events_other, then moved to the partitions made below.
INSERT INTO metrics_events_partitioned SELECT * FROM metrics_events;
DROP TABLE metrics_events;
ALTER TABLE metrics_events_partitioned RENAME TO metrics_events;

-- Makes the day partitions metrics_events_YYYYMMDD of [first_day, last_day] that are missing, moving into
-- each the rows metrics_events_other holds for its day (a partition cannot be added over them).
CREATE FUNCTION metrics_events_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  day date := first_day;
  made integer := 0;
  part text;
  lower timestamptz;
  upper timestamptz;
BEGIN
  WHILE day <= last_day LOOP
    part := 'metrics_events_' || to_char(day, 'YYYYMMDD');
    IF to_regclass(part) IS NULL THEN
      lower := day::timestamp AT TIME ZONE 'UTC';
      upper := (day + 1)::timestamp AT TIME ZONE 'UTC';
      EXECUTE format('CREATE TABLE %I (LIKE metrics_events)', part);
      EXECUTE format(
        'WITH moved AS (DELETE FROM metrics_events_other WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)
         INSERT INTO %I SELECT * FROM moved', part) USING lower, upper;
      EXECUTE format('ALTER TABLE metrics_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                     part, lower, upper);
      made := made + 1;
    END IF;
    day := day + 1;
  END LOOP;
  RETURN made;
END
$$;

-- From the oldest row's day (31 days back at most: older rows wait in metrics_events_other for the
-- pruner) to the day after tomorrow; the pruner keeps making them ahead (MetricsPruner).
SELECT metrics_events_partitions(
  greatest(coalesce((SELECT min(occurred_at AT TIME ZONE 'UTC')::date FROM metrics_events),
                    (now() AT TIME ZONE 'UTC')::date),
           (now() AT TIME ZONE 'UTC')::date - 31),
  (now() AT TIME ZONE 'UTC')::date + 2);

-- Down Migration

CREATE TABLE metrics_events_flat (LIKE metrics_events);
INSERT INTO metrics_events_flat SELECT * FROM metrics_events;
DROP TABLE metrics_events;
DROP FUNCTION metrics_events_partitions(date, date);
ALTER TABLE metrics_events_flat RENAME TO metrics_events;
CREATE INDEX metrics_events_occurred_at ON metrics_events USING brin (occurred_at);
DROP FUNCTION metrics_deltas_check(timestamptz);
DROP TABLE metrics_rollup_deltas;
