-- Up Migration

-- De-duplication without a row per event (src/consumers/deduplication/stream-marks.ts): each API process
-- is a producer whose events carry their number in its stream of their type (headers x-producer and
-- x-sequence). Per consumer and stream, the highest number applied, and the numbers below it not applied
-- (gaps, as ranges): a copy is new exactly when it is above the high or in a gap. Both are written in the
-- transaction that applies the events. One row per producer and type, updated per batch, instead of one
-- row per event in consumer_applied_events, which keeps only the events that carry no stream (published
-- by a release before this one, or by hand) and the self-test's.
CREATE TABLE consumer_stream_marks (
  consumer    text COLLATE "C" NOT NULL,
  producer    uuid NOT NULL,
  event_type  text COLLATE "C" NOT NULL,
  high        bigint NOT NULL CHECK (high >= 1),
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (consumer, producer, event_type)
)
-- Every batch updates its streams' rows: room on each page keeps those updates HOT.
WITH (fillfactor = 50);

CREATE TABLE consumer_stream_gaps (
  consumer        text COLLATE "C" NOT NULL,
  producer        uuid NOT NULL,
  event_type      text COLLATE "C" NOT NULL,
  first_sequence  bigint NOT NULL CHECK (first_sequence >= 1),
  last_sequence   bigint NOT NULL CHECK (last_sequence >= first_sequence),
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, producer, event_type, first_sequence)
);

-- A batch's writes, the streams' included, go to PostgreSQL as one statement (src/db/batch-statement.ts):
-- this ends it with an error, undoing all of it, when fewer streams moved than the consumer expected
-- (another consumer of the queue moved one since this one read it). SQLSTATE 40001: retried at once.
CREATE FUNCTION consumer_stream_check(moved bigint, expected_moved integer, created bigint,
                                      expected_created integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF moved <> expected_moved OR created <> expected_created THEN
    RAISE EXCEPTION 'a producer stream moved under this batch (% of % moved, % of % created)',
      moved, expected_moved, created, expected_created USING ERRCODE = 'serialization_failure';
  END IF;
END
$$;

-- Down Migration

DROP FUNCTION consumer_stream_check(bigint, integer, bigint, integer);
DROP TABLE consumer_stream_gaps;
DROP TABLE consumer_stream_marks;
