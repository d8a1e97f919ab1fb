-- Up Migration

-- Event ids are stored as uuid (16 bytes), not text (37 bytes and a collation), where the schema keeps
-- them per event: the audit trail's unique event_id and the consumers' per-id de-duplication records.
-- New ids are UUIDv7 (src/bus/event-id.ts): time ordered, so these indexes grow at their right edge.
--
-- Every event_id that passed validation is a lower-case UUID (the envelope's schema), and uuid prints it
-- back the same way, so the audit trail's hashes (which cover the text) still verify. A row that is not
-- (written by a hand-made message before the schema insisted on lower case) stops the migration with
-- its id rather than being changed or dropped: the audit trail cannot be rewritten.
DO $$
DECLARE
  bad text;
BEGIN
  SELECT event_id INTO bad FROM audit_records
   WHERE event_id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'audit_records holds event_id % which is not a lower-case UUID', bad
      USING HINT = 'migrations/1765065600000_uuid-event-ids.sql: such a trail has to stay on text';
  END IF;
  SELECT event_id INTO bad FROM consumer_applied_events
   WHERE event_id !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'consumer_applied_events holds event_id % which is not a UUID', bad;
  END IF;
END
$$;

DROP VIEW applied_events;
ALTER TABLE audit_records ALTER COLUMN event_id TYPE uuid USING event_id::uuid;
ALTER TABLE consumer_applied_events ALTER COLUMN event_id TYPE uuid USING event_id::uuid;
CREATE VIEW applied_events AS
  SELECT consumer, event_id, applied_at FROM consumer_applied_events
  UNION ALL
  SELECT 'audit'::text, event_id, recorded_at FROM audit_records;

-- Down Migration

DROP VIEW applied_events;
ALTER TABLE consumer_applied_events ALTER COLUMN event_id TYPE text COLLATE "C" USING event_id::text;
ALTER TABLE audit_records ALTER COLUMN event_id TYPE text COLLATE "C" USING event_id::text;
CREATE VIEW applied_events AS
  SELECT consumer, event_id, applied_at FROM consumer_applied_events
  UNION ALL
  SELECT 'audit'::text, event_id, recorded_at FROM audit_records;
