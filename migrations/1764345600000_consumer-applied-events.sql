-- Up Migration

-- Every event a consumer has applied, recorded in the same transaction as its effect: a redelivered or
-- replayed copy finds its id here and changes nothing. The id is text because the dead-letter archive
-- keys raw messages, which need not carry a valid event_id.
CREATE TABLE consumer_applied_events (
  consumer text NOT NULL,
  event_id text COLLATE "C" NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

-- For pruning by age.
CREATE INDEX consumer_applied_events_applied_at ON consumer_applied_events (applied_at);

-- Down Migration

DROP TABLE consumer_applied_events;
