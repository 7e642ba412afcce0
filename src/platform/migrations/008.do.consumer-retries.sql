-- Every retry a reliable consumer made (platform/transport/reliable-consumer.ts): which message, the
-- attempt that failed and its error. Written only when a handler fails, so the hot path never
-- touches it; an order's journey shows its retries (the dashboard), and housekeeping removes them
-- with the inbox's retention (INBOX_RETENTION_MS).
CREATE TABLE IF NOT EXISTS consumer_retries (
  id bigserial PRIMARY KEY,
  group_id text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  message_offset text NOT NULL,
  message_key text NOT NULL,
  event_id text,
  attempt integer NOT NULL,
  -- { message, code? }
  error jsonb NOT NULL,
  retry_in_ms integer NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS consumer_retries_key ON consumer_retries (message_key, id);
CREATE INDEX IF NOT EXISTS consumer_retries_failed_at ON consumer_retries (failed_at);
