-- The platform's own tables, shared by every service module of a database.
-- IF NOT EXISTS: databases created before migrations were versioned already have these tables.

-- Event store: append-only, optimistic concurrency on (stream_id, version).
CREATE TABLE IF NOT EXISTS es_events (
  global_position bigserial PRIMARY KEY,
  transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  stream_id text NOT NULL,
  stream_type text NOT NULL,
  version integer NOT NULL CHECK (version > 0),
  event_id uuid NOT NULL UNIQUE,
  event_type text NOT NULL,
  schema_version integer NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  occurred_on timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT es_events_stream_version UNIQUE (stream_id, version)
);
CREATE INDEX IF NOT EXISTS es_events_by_transaction ON es_events (transaction_id, global_position);
CREATE INDEX IF NOT EXISTS es_events_by_time ON es_events (occurred_on);
CREATE OR REPLACE FUNCTION es_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are immutable: % on es_events is not allowed', TG_OP;
END;
$$;
DROP TRIGGER IF EXISTS es_events_immutable ON es_events;
CREATE TRIGGER es_events_immutable BEFORE UPDATE OR DELETE ON es_events
  FOR EACH ROW EXECUTE FUNCTION es_events_are_immutable();

-- Transactional outbox and the lease that lets one relay per database publish.
CREATE TABLE IF NOT EXISTS outbox (
  id bigserial PRIMARY KEY,
  topic text NOT NULL,
  message_key text NOT NULL,
  value text NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  publish_attempts integer NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS outbox_relay_lease (
  id integer PRIMARY KEY CHECK (id = 1),
  holder text NOT NULL,
  expires_at timestamptz NOT NULL
);
INSERT INTO outbox_relay_lease (id, holder, expires_at) VALUES (1, '', '-infinity') ON CONFLICT (id) DO NOTHING;

-- Inbox: ids of handled messages per consumer, written in the handler's transaction.
CREATE TABLE IF NOT EXISTS inbox (
  consumer text NOT NULL,
  message_id text NOT NULL,
  handled_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);

-- Projection checkpoints: how far each projection has read the event store.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
  name text PRIMARY KEY,
  transaction_id xid8 NOT NULL,
  global_position bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Replay jobs: progress of re-publishing stored events, so an interrupted replay resumes.
CREATE TABLE IF NOT EXISTS replay_jobs (
  id text PRIMARY KEY,
  filter jsonb NOT NULL,
  position_tx xid8,
  position bigint NOT NULL DEFAULT 0,
  done integer NOT NULL DEFAULT 0,
  total integer NOT NULL,
  status text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE replay_jobs ADD COLUMN IF NOT EXISTS stream_type text;

-- Idempotency-Key responses, scoped per service and client: one client's key never answers another's.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  scope text NOT NULL,
  client text NOT NULL,
  key text NOT NULL,
  request_hash text NOT NULL,
  status integer NOT NULL,
  headers jsonb NOT NULL,
  body jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Databases from before scoping had one global key.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'legacy';
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS client text NOT NULL DEFAULT 'anonymous';
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (scope, client, key);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX IF NOT EXISTS inbox_by_age ON inbox (handled_at);
