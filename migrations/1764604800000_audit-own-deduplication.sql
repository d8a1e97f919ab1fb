-- Up Migration

-- The audit consumer de-duplicates in its own table (audit_records.event_id is unique, written in the
-- same transaction as the record): the runtime no longer records its events in consumer_applied_events,
-- which cost every audited event a second row, two more index entries and their WAL. Its self-test
-- events, which leave no record, are still recorded there.
--
-- What each consumer has applied, and when (its transaction's now()), whichever table de-duplicates it:
-- for reading (latency, counts), not for de-duplicating.
CREATE VIEW applied_events AS
  SELECT consumer, event_id, applied_at FROM consumer_applied_events
  UNION ALL
  SELECT 'audit'::text, event_id, recorded_at FROM audit_records;

-- applied_at grows with the table (now() of the transaction that appends): a BRIN index serves the
-- pruning by age it is for, at a fraction of a btree's cost on every insert.
DROP INDEX consumer_applied_events_applied_at;
CREATE INDEX consumer_applied_events_applied_at ON consumer_applied_events USING brin (applied_at);

-- Down Migration

DROP INDEX consumer_applied_events_applied_at;
CREATE INDEX consumer_applied_events_applied_at ON consumer_applied_events (applied_at);
DROP VIEW applied_events;
