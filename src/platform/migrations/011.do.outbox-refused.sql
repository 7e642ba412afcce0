-- Outbox rows the broker refused for good (platform/outbox/refused.ts): too large for the topic's
-- max.message.bytes, an invalid record, a topic this principal may not write. The relay sets such a
-- row aside (refused_at, refused_reason: the Kafka error id) instead of retrying it forever, and
-- holds the later rows of its topic and key behind it, so that key keeps its order while every
-- other key flows. An operator retries it (refused_at back to NULL) or discards it.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS refused_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS refused_reason text;
-- A discarded row is done without reaching the broker: discarded_at, who and why, and published_at
-- set too (to the same time), so that everything that waits for a row to leave the outbox stops
-- waiting for it (the rows of its key, timers armed on publish, the backlog) and the retention
-- prunes it like a published row. published_epoch stays NULL: no relay published it.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS discarded_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS discarded_by text;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS discarded_reason text;
-- The rows that hold their key back, for the relay's check of each row it selects: empty, and so
-- free, while nothing is refused.
CREATE INDEX IF NOT EXISTS outbox_refused ON outbox (topic, message_key, id)
  WHERE refused_at IS NOT NULL AND published_at IS NULL;
