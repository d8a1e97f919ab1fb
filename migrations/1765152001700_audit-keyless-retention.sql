-- Up Migration

-- What the audit trail keeps (docs/reference/security.md, "What the audit trail keeps"): model events,
-- filters, authenticated errors and every 5xx for ever, one row each; client errors of requests without
-- a valid key (api.error, 4xx, user_id null: "keyless 4xx") one row each for AUDIT_KEYLESS_RETENTION_DAYS,
-- then only as counts per day, status and error code.
--
-- Keyless 4xx get a chain of their own, '~keyless' ('~' cannot start a model id), so that pruning them
-- cuts only a prefix of one chain and leaves every other chain whole. chain_key was generated from
-- model_id; it becomes a column the consumer writes (src/consumers/audit/keyless-errors.ts decides), with
-- every existing record keeping its value: DROP EXPRESSION rewrites nothing.
ALTER TABLE audit_records ALTER COLUMN chain_key DROP EXPRESSION;

-- The keyless 4xx records pruned, counted: `day` is the UTC day the event occurred, `status` its HTTP
-- status, `code` its error code (error.type). GET /audit/keyless adds the records still held.
CREATE TABLE audit_keyless_counts (
  day     date NOT NULL,
  status  smallint NOT NULL,
  code    text COLLATE "C" NOT NULL,
  count   bigint NOT NULL CHECK (count > 0),
  PRIMARY KEY (day, status, code)
);

-- Every pruning, with the head it pruned through: the hash of the last record deleted, which is the
-- new first_prev_hash of the chain's head (audit verify starts the chain from it).
CREATE TABLE audit_prunes (
  id               bigserial PRIMARY KEY,
  chain_key        text COLLATE "C" NOT NULL,
  pruned_at        timestamptz NOT NULL DEFAULT now(),
  -- Every record pruned occurred before this time.
  occurred_before  timestamptz NOT NULL,
  first_position   bigint NOT NULL,
  last_position    bigint NOT NULL CHECK (last_position >= first_position),
  last_hash        bytea NOT NULL CHECK (length(last_hash) = 32)
);

-- Still append-only, with one exception: records of the '~keyless' chain that lie before its head's
-- first_position, i.e. that audit_prune_keyless (below) declared pruned first, in the same transaction.
-- Anything else — another chain, a record in the middle — is refused as before.
CREATE OR REPLACE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND OLD.chain_key = '~keyless' AND OLD.chain_position <
       (SELECT first_position FROM audit_chain_heads WHERE chain_key = OLD.chain_key) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_records is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'see migrations/1764345600001_audit-trail.sql for how to prune by hand';
END;
$$;

-- Prunes the oldest records of the '~keyless' chain, a whole prefix: from the chain's first record up to
-- the one before the first that occurred at or after `cutoff`, at most `max_records` of them. In one
-- transaction: counts them into audit_keyless_counts, moves the head's start past them (first_position,
-- and first_prev_hash = the hash of the last one pruned), records the pruning in audit_prunes and deletes
-- them. The head is locked throughout, so appenders of keyless records wait; every other chain goes on.
-- Returns the number of records pruned (0: nothing to prune).
CREATE FUNCTION audit_prune_keyless(cutoff timestamptz, max_records integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  head_first  bigint;
  stop_at     bigint;
  through     bigint;
  through_hash bytea;
  deleted     bigint;
BEGIN
  SELECT first_position INTO head_first FROM audit_chain_heads WHERE chain_key = '~keyless' FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  SELECT min(chain_position) FILTER (WHERE occurred_at >= cutoff), max(chain_position)
    INTO stop_at, through
    FROM (SELECT chain_position, occurred_at FROM audit_records
           WHERE chain_key = '~keyless' AND chain_position >= head_first
           ORDER BY chain_position LIMIT max_records) w;
  IF stop_at IS NOT NULL THEN
    through := stop_at - 1;
  END IF;
  IF through IS NULL OR through < head_first THEN
    RETURN 0;
  END IF;
  SELECT hash INTO STRICT through_hash FROM audit_records
   WHERE chain_key = '~keyless' AND chain_position = through;
  INSERT INTO audit_keyless_counts AS c (day, status, code, count)
    SELECT (occurred_at AT TIME ZONE 'UTC')::date, (envelope #>> '{metadata,response_code}')::smallint,
           COALESCE(envelope #>> '{error,type}', ''), count(*)
      FROM audit_records
     WHERE chain_key = '~keyless' AND chain_position BETWEEN head_first AND through
     GROUP BY 1, 2, 3
  ON CONFLICT (day, status, code) DO UPDATE SET count = c.count + excluded.count;
  UPDATE audit_chain_heads SET first_position = through + 1, first_prev_hash = through_hash
   WHERE chain_key = '~keyless';
  INSERT INTO audit_prunes (chain_key, occurred_before, first_position, last_position, last_hash)
    VALUES ('~keyless', cutoff, head_first, through, through_hash);
  DELETE FROM audit_records WHERE chain_key = '~keyless' AND chain_position BETWEEN head_first AND through;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  -- Positions are dense (a gap is a deleted record): anything else and the counts would be wrong.
  IF deleted <> through - head_first + 1 THEN
    RAISE EXCEPTION 'audit chain ~keyless has % records at positions % to %, not %',
      deleted, head_first, through, through - head_first + 1;
  END IF;
  RETURN deleted;
END
$$;

-- Down Migration

DROP FUNCTION audit_prune_keyless(timestamptz, integer);
CREATE OR REPLACE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_records is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'see migrations/1764345600001_audit-trail.sql for how to prune by hand';
END;
$$;
DROP TABLE audit_prunes;
DROP TABLE audit_keyless_counts;
-- chain_key stays a plain column: a generated one cannot hold the '~keyless' records' key.
