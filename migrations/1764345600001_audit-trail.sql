-- Up Migration

-- The audit trail: every event routed to `audit.trail` (model lifecycle, model reads, filters, API
-- errors), with its full envelope, appended by the audit consumer and never changed.
--
-- Tamper evidence: records form one hash chain per model (`chain_key` = model_id; events without one share
-- the chain '~global', a key no model_id can take since '~' is not allowed in one). Each record stores the
-- hash of the record before it in its chain (`prev_hash`) and its own hash over that and its fields; the
-- canonical form is documented in src/consumers/audit/audit-hash.ts, and `telemetry-bus audit verify`
-- recomputes it.
CREATE TABLE audit_records (
  id              bigserial PRIMARY KEY,
  -- Text, not uuid: stored exactly as the event spells it, so the hash covers what was received.
  event_id        text COLLATE "C" NOT NULL UNIQUE,
  event_type      text COLLATE "C" NOT NULL,
  -- Null for filters and for errors that name no model.
  model_id        text COLLATE "C",
  chain_key       text COLLATE "C" NOT NULL GENERATED ALWAYS AS (COALESCE(model_id, '~global')) STORED,
  -- 1, 2, 3, … within the chain: a gap is a deleted record, and no two records can claim one place.
  chain_position  bigint NOT NULL CHECK (chain_position >= 1),
  correlation_id  text COLLATE "C" NOT NULL,
  user_id         text COLLATE "C",
  -- The model's version after the event (model events only).
  sequence        bigint,
  -- The event's timestamp; recorded_at is when the consumer's transaction wrote it.
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL,
  envelope        jsonb NOT NULL,
  prev_hash       bytea NOT NULL CHECK (length(prev_hash) = 32),
  hash            bytea NOT NULL CHECK (length(hash) = 32),
  UNIQUE (chain_key, chain_position)
);

-- GET /audit pages newest first by (occurred_at, id), optionally within one model, type or correlation id.
CREATE INDEX audit_records_occurred_at_idx ON audit_records (occurred_at, id);
CREATE INDEX audit_records_model_idx ON audit_records (model_id, occurred_at, id);
CREATE INDEX audit_records_event_type_idx ON audit_records (event_type, occurred_at, id);
CREATE INDEX audit_records_correlation_idx ON audit_records (correlation_id, occurred_at, id);

-- Append-only in the database too, not only by convention of the code: UPDATE, DELETE and TRUNCATE are
-- refused for every role (the owner included), so neither a bug nor a stray psql session can rewrite it.
--
-- Pruning by hand, if a retention policy ever requires it (as the table owner, in one transaction, with
-- the consumers stopped or not: the chain heads keep verify working across the cut):
--
--   BEGIN;
--   ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only;
--   DELETE FROM audit_records WHERE occurred_at < '2025-01-01T00:00:00Z';
--   -- Each chain now starts at its oldest remaining record: tell verify where and with what prev_hash.
--   UPDATE audit_chain_heads h SET first_position = f.chain_position, first_prev_hash = f.prev_hash
--     FROM (SELECT DISTINCT ON (chain_key) chain_key, chain_position, prev_hash
--             FROM audit_records ORDER BY chain_key, chain_position) f
--    WHERE h.chain_key = f.chain_key;
--   -- Chains pruned entirely start after their last record.
--   UPDATE audit_chain_heads h SET first_position = h.last_position + 1, first_prev_hash = h.last_hash
--    WHERE NOT EXISTS (SELECT 1 FROM audit_records r WHERE r.chain_key = h.chain_key);
--   ALTER TABLE audit_records ENABLE TRIGGER audit_records_append_only;
--   COMMIT;
CREATE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_records is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'see migrations/1764345600001_audit-trail.sql for how to prune by hand';
END;
$$;

CREATE TRIGGER audit_records_append_only
  BEFORE UPDATE OR DELETE ON audit_records
  FOR EACH ROW EXECUTE FUNCTION audit_records_refuse_change();

CREATE TRIGGER audit_records_no_truncate
  BEFORE TRUNCATE ON audit_records
  FOR EACH STATEMENT EXECUTE FUNCTION audit_records_refuse_change();

-- The last record of each chain, so that appending finds its predecessor in O(1), and locks it: the row
-- lock serialises writers of one chain (two consumers can never fork it), writers of other chains do not
-- wait. verify also checks each chain against its head, which catches records deleted from the end.
CREATE TABLE audit_chain_heads (
  chain_key        text COLLATE "C" PRIMARY KEY,
  last_id          bigint NOT NULL DEFAULT 0,
  last_position    bigint NOT NULL DEFAULT 0 CHECK (last_position >= 0),
  last_hash        bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(last_hash) = 32),
  -- Where the chain starts: position 1 after the all-zero hash, unless it was pruned (see above).
  first_position   bigint NOT NULL DEFAULT 1 CHECK (first_position >= 1),
  first_prev_hash  bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(first_prev_hash) = 32)
)
-- Every batch updates the heads it touches: room on each page keeps those updates HOT (no index churn).
WITH (fillfactor = 50);

-- Down Migration

DROP TABLE audit_chain_heads;
DROP TABLE audit_records;
DROP FUNCTION audit_records_refuse_change();
