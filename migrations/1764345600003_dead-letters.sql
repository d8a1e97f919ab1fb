-- Up Migration

-- Who did what to the dead-letter archive: every replay (dry runs included), delete and purge, with the
-- API key (or CLI user) that asked. Replays are also recorded in the audit trail, as `dlq.replayed`
-- events carrying this table's id (src/consumers/dlq/replay-audit.ts).
CREATE TABLE dlq_operations (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  action        text NOT NULL CHECK (action IN ('replay', 'delete', 'purge')),
  -- 'api-key:<key id>' or 'cli:<os user>@<host>'.
  actor         text NOT NULL,
  -- The API key, when the operation came through the HTTP API (keys are revoked, never deleted).
  actor_key_id  uuid REFERENCES api_keys (id),
  at            timestamptz NOT NULL DEFAULT now(),
  dry_run       boolean NOT NULL DEFAULT false,
  -- What was asked: { ids } or { filter }, and max.
  selection     jsonb NOT NULL,
  -- Dead letters the selection matched when the operation started.
  matched       integer NOT NULL CHECK (matched >= 0),
  -- Dead letters republished (or, for a dry run, that would have been) or deleted; purges keep no list.
  affected_ids  uuid[] NOT NULL DEFAULT '{}',
  affected      integer NOT NULL DEFAULT 0 CHECK (affected >= 0)
);

CREATE INDEX dlq_operations_at_idx ON dlq_operations (at);

-- The dead-letter archive: one row per message that reached dlq.dead_letters, with everything needed to
-- understand it (error, stack, headers including x-death) and to replay it byte for byte (content,
-- properties, headers). Text columns that are indexed are cut short by the consumer (B-tree entries are
-- limited to about 2.7 kB), the full values stay in `headers` and `content`.
CREATE TABLE dead_letters (
  -- x-dead-letter-id set by the runtime, or a UUID v5 derived from the message for broker-made ones.
  id                    uuid PRIMARY KEY,
  -- From the envelope, else the AMQP message id; null when the message carries neither.
  event_id              text COLLATE "C",
  event_type            text COLLATE "C",
  model_id              text COLLATE "C",
  correlation_id        text,
  original_exchange     text,
  original_routing_key  text,
  -- The queue that failed it: replay republishes there, and only there.
  original_queue        text COLLATE "C",
  -- retries_exhausted | poison | delivery_limit, rejected, expired, maxlen (broker-made) | unknown
  reason                text NOT NULL,
  -- Failed attempts in the consumer (x-attempts), or broker deliveries for a delivery-limit dead letter.
  attempts              integer NOT NULL CHECK (attempts >= 0),
  error_type            text COLLATE "C" NOT NULL,
  error_message         text NOT NULL,
  error_stack           text,
  first_failure_at      timestamptz NOT NULL,
  last_failure_at       timestamptz NOT NULL,
  received_at           timestamptz NOT NULL DEFAULT now(),
  content               bytea NOT NULL,
  -- AMQP properties other than headers (messageId, correlationId, type, timestamp, …).
  properties            jsonb NOT NULL,
  -- All headers as received, x-death included; byte arrays as {"$bytes": base64}.
  headers               jsonb NOT NULL,
  state                 text NOT NULL DEFAULT 'dead' CHECK (state IN ('dead', 'replayed')),
  replayed_at           timestamptz,
  replayed_by           text,
  replay_operation_id   bigint REFERENCES dlq_operations (id),
  CHECK ((state = 'replayed') = (replayed_at IS NOT NULL))
);

-- Pages are newest first by (last_failure_at, id); each filter gets the same order after its equality.
CREATE INDEX dead_letters_failed_idx ON dead_letters (last_failure_at, id);
CREATE INDEX dead_letters_event_type_idx ON dead_letters (event_type, last_failure_at, id);
CREATE INDEX dead_letters_model_idx ON dead_letters (model_id, last_failure_at, id);
CREATE INDEX dead_letters_error_type_idx ON dead_letters (error_type, last_failure_at, id);
CREATE INDEX dead_letters_queue_idx ON dead_letters (original_queue, last_failure_at, id);
CREATE INDEX dead_letters_event_id_idx ON dead_letters (event_id);
-- Replays scan what is still dead, oldest first.
CREATE INDEX dead_letters_dead_idx ON dead_letters (last_failure_at, id) WHERE state = 'dead';

-- Down Migration

DROP TABLE dead_letters;
DROP TABLE dlq_operations;
