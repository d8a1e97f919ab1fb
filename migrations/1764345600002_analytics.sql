-- Up Migration

-- Usage analytics, by hour (UTC), written by the analytics consumer and read by GET /analytics/* and the
-- recommendation work. Every table is keyed by its natural key, so the consumer adds a batch's counts
-- with one INSERT … ON CONFLICT DO UPDATE per table. An hour is the start of the hour of the events'
-- timestamps; the CHECKs use the epoch, which (unlike date_trunc) does not depend on the session's
-- TimeZone.

-- model.queried, per model. vendor_id and capability_tier are part of the key because a model can move
-- between them: each read counts under the values it had when it was read.
CREATE TABLE analytics_model_queries (
  hour            timestamptz NOT NULL CHECK (extract(epoch FROM hour) % 3600 = 0),
  model_id        text COLLATE "C" NOT NULL,
  vendor_id       text COLLATE "C" NOT NULL,
  capability_tier text COLLATE "C" NOT NULL,
  queries         bigint NOT NULL CHECK (queries > 0),
  -- Reads served from the API's cache (metadata.cache_hit true).
  cache_hits      bigint NOT NULL CHECK (cache_hits BETWEEN 0 AND queries),
  PRIMARY KEY (hour, model_id, vendor_id, capability_tier)
);

-- filter.executed: one row per hour with the totals.
CREATE TABLE analytics_filter_executions (
  hour             timestamptz PRIMARY KEY CHECK (extract(epoch FROM hour) % 3600 = 0),
  executions       bigint NOT NULL CHECK (executions > 0),
  -- Sum of result_count (items on the page returned), for the average.
  result_count_sum bigint NOT NULL CHECK (result_count_sum >= 0),
  zero_results     bigint NOT NULL CHECK (zero_results BETWEEN 0 AND executions),
  has_more         bigint NOT NULL CHECK (has_more BETWEEN 0 AND executions),
  cache_hits       bigint NOT NULL CHECK (cache_hits BETWEEN 0 AND executions)
);

-- filter.executed: how many executions used each query parameter. sort and limit are always present
-- (the event carries the parameters with defaults filled in); cursor counts only when one was given.
CREATE TABLE analytics_filter_parameters (
  hour       timestamptz NOT NULL CHECK (extract(epoch FROM hour) % 3600 = 0),
  parameter  text COLLATE "C" NOT NULL CHECK (length(parameter) BETWEEN 1 AND 64),
  executions bigint NOT NULL CHECK (executions > 0),
  PRIMARY KEY (hour, parameter)
);

-- filter.executed: the values used, for the parameters with few possible values (vendor_id,
-- capability_tier, is_active, function_call_support, sort); booleans as 'true' / 'false'.
CREATE TABLE analytics_filter_values (
  hour       timestamptz NOT NULL CHECK (extract(epoch FROM hour) % 3600 = 0),
  parameter  text COLLATE "C" NOT NULL CHECK (length(parameter) BETWEEN 1 AND 64),
  value      text COLLATE "C" NOT NULL CHECK (length(value) BETWEEN 1 AND 128),
  executions bigint NOT NULL CHECK (executions > 0),
  PRIMARY KEY (hour, parameter, value)
);

-- model.registered / updated / deactivated, per vendor and tier (the model's values after the change).
CREATE TABLE analytics_model_lifecycle (
  hour            timestamptz NOT NULL CHECK (extract(epoch FROM hour) % 3600 = 0),
  event_type      text COLLATE "C" NOT NULL
                  CHECK (event_type IN ('model.registered', 'model.updated', 'model.deactivated')),
  vendor_id       text COLLATE "C" NOT NULL,
  capability_tier text COLLATE "C" NOT NULL,
  events          bigint NOT NULL CHECK (events > 0),
  -- Events that changed the model (data.changed; always true for a registration).
  changes         bigint NOT NULL CHECK (changes BETWEEN 0 AND events),
  PRIMARY KEY (hour, event_type, vendor_id, capability_tier)
);

-- Down Migration

DROP TABLE analytics_model_lifecycle;
DROP TABLE analytics_filter_values;
DROP TABLE analytics_filter_parameters;
DROP TABLE analytics_filter_executions;
DROP TABLE analytics_model_queries;
