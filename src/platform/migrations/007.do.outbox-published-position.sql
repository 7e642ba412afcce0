-- Where each outbox row landed once published (platform/outbox/relay-lease.ts markPublished): its
-- partition and offset on the topic, as the broker (or the embedded log) acknowledged them, so an
-- order's journey shows every message's place on Kafka too, not only on the embedded log.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS published_partition integer;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS published_offset text;
