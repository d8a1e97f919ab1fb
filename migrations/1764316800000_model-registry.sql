-- Up Migration

-- Identifiers use the "C" collation so that ordering is by code point: the same order clients get from a
-- byte-wise sort, and the same order the filter's keyset cursor relies on, whatever the server's locale.
CREATE TABLE models (
  model_id              text COLLATE "C" PRIMARY KEY
                        -- '.' and '..' are refused: URLs resolve them as dot segments, so no route could reach them.
                        CHECK (model_id ~ '^[A-Za-z0-9._:/-]{1,128}$' AND model_id NOT IN ('.', '..')),
  vendor_id             text COLLATE "C" NOT NULL
                        CHECK (vendor_id ~ '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$'),
  capability_tier       text COLLATE "C" NOT NULL
                        CHECK (capability_tier IN ('Tier_1', 'Tier_2', 'Tier_3', 'Tier_4')),
  context_window        integer NOT NULL CHECK (context_window > 0),
  cost_in_per_mil       double precision NOT NULL CHECK (cost_in_per_mil >= 0 AND cost_in_per_mil <> 'Infinity'),
  cost_out_per_mil      double precision NOT NULL CHECK (cost_out_per_mil >= 0 AND cost_out_per_mil <> 'Infinity'),
  function_call_support boolean NOT NULL,
  is_active             boolean NOT NULL DEFAULT true,
  -- Grows by one on every change; it is the per-model sequence number of the model's events.
  version               integer NOT NULL DEFAULT 1 CHECK (version >= 1),
  created_at            timestamptz NOT NULL,
  updated_at            timestamptz NOT NULL
);

-- One index per sortable column, with model_id as the tie-breaker the keyset cursor uses.
CREATE INDEX models_vendor_idx ON models (vendor_id, model_id);
CREATE INDEX models_tier_idx ON models (capability_tier, model_id);
CREATE INDEX models_context_window_idx ON models (context_window, model_id);
CREATE INDEX models_cost_in_idx ON models (cost_in_per_mil, model_id);
CREATE INDEX models_cost_out_idx ON models (cost_out_per_mil, model_id);
CREATE INDEX models_created_at_idx ON models (created_at, model_id);
CREATE INDEX models_updated_at_idx ON models (updated_at, model_id);

CREATE TABLE api_keys (
  id           uuid PRIMARY KEY,
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  role         text NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
  -- SHA-256 of the key; the key itself is never stored.
  key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz
);

-- Down Migration
DROP TABLE api_keys;
DROP TABLE models;
