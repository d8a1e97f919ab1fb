-- Up Migration

-- The loss ledger: how many events reached each stage, per minute of the events' own timestamps and per
-- event type. API processes add what they emitted, spooled and had confirmed by the broker (flushed every
-- second); each consumer adds what it applied in the same transaction as the effect, so that count is
-- exact. Comparing stages over the same minutes shows where events are (or are missing).
CREATE TABLE telemetry_ledger (
  minute      timestamptz NOT NULL,
  -- emitted, spooled, confirmed (by API processes), applied (by a consumer).
  stage       text COLLATE "C" NOT NULL CHECK (stage IN ('emitted', 'spooled', 'confirmed', 'applied')),
  -- The consumer, for 'applied'; '' for the API's stages.
  consumer    text COLLATE "C" NOT NULL DEFAULT '',
  event_type  text COLLATE "C" NOT NULL,
  events      bigint NOT NULL CHECK (events >= 0),
  PRIMARY KEY (minute, stage, consumer, event_type)
);

-- Down Migration

DROP TABLE telemetry_ledger;
