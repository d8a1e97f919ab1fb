-- Up Migration

-- The audit consumer's one-statement append (src/consumers/audit/audit-consumer.ts): it inserts a batch's
-- records and moves their chains' heads from the values it cached, in one statement, and this check ends
-- that statement with an error — undoing it all — unless every record went in and every head moved
-- (another consumer moved a head, or an event is in the trail already). SQLSTATE 40001: the runtime
-- retries the batch at once, and the consumer takes its locking path.
CREATE FUNCTION audit_append_check(inserted bigint, expected_inserted integer, moved bigint,
                                   expected_moved integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF inserted <> expected_inserted OR moved <> expected_moved THEN
    RAISE EXCEPTION 'audit append from cached heads refused (% of % records, % of % heads)',
      inserted, expected_inserted, moved, expected_moved USING ERRCODE = 'serialization_failure';
  END IF;
END
$$;

-- Down Migration

DROP FUNCTION audit_append_check(bigint, integer, bigint, integer);
