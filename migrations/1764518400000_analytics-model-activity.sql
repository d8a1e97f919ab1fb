-- Up Migration

-- Per model, what analytics last saw of it, written by the analytics consumer and read by
-- GET /analytics/models/:model_id and the recommendation work. Unlike the hourly counts, these fields are
-- not sums: an event applied late (a retry, a replayed dead letter) must not overwrite a newer one, so the
-- consumer moves them only forward (docs/guides/ordering.md):
--
-- * the state fields (last_sequence … is_active) come from the newest model event applied, in one total
--   order: by `sequence` (the model's version), then timestamp, then event_id. An older version never
--   wins (a retried or replayed change, a stale cached read); at one version the newest event does (reads
--   and no-op updates repeat a version). The same order in src/consumers/analytics/analytics-aggregation.ts
--   (isNewer) and in the consumer's upsert, which compares (last_sequence, last_event_at, last_event_id);
-- * last_queried_at is the newest model.queried timestamp, whatever the order the reads arrive in.
-- Both are maxima, so the row is the same whatever order, batches and duplicates the events come in.
--
-- A model gets its row with the first of its events applied after this migration; nothing is backfilled
-- (the hourly counts do not say which event came last).
CREATE TABLE analytics_model_activity (
  model_id           text COLLATE "C" PRIMARY KEY,
  -- The newest event: its sequence (the model's version after it, or read by it), timestamp, type and id.
  last_sequence      integer NOT NULL CHECK (last_sequence >= 1),
  last_event_at      timestamptz NOT NULL,
  last_event_type    text COLLATE "C" NOT NULL CHECK (last_event_type IN
                       ('model.registered', 'model.updated', 'model.deactivated', 'model.queried')),
  last_event_id      uuid NOT NULL,
  -- data.updated_at of that event: when the registry committed version last_sequence, i.e. the model's
  -- newest change (registration, update or deactivation). Every event of one version carries the same
  -- value, so it is right even when a read of a new version is applied before the (retried) update that
  -- made it. vendor_id, capability_tier and is_active are the model's as of that version.
  last_changed_at    timestamptz NOT NULL,
  vendor_id          text COLLATE "C" NOT NULL,
  capability_tier    text COLLATE "C" NOT NULL,
  is_active          boolean NOT NULL,
  -- The newest model.queried event timestamp; null until the model is read.
  last_queried_at    timestamptz,
  -- When the row last moved (the transaction of the batch that moved it).
  updated_at         timestamptz NOT NULL
);

-- The query counts of one model over a range (GET /analytics/models/:model_id). The primary key starts
-- with the hour, which would mean scanning every model's hours in the range. The consumer's updates of
-- existing rows change only counts, which no index covers, so they can be HOT (no index entry written);
-- the index costs a write on a model's first row of an hour, and on an update whose page is full.
CREATE INDEX analytics_model_queries_model_idx ON analytics_model_queries (model_id, hour);

-- Down Migration

DROP INDEX analytics_model_queries_model_idx;
DROP TABLE analytics_model_activity;
