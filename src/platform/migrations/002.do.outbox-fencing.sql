-- Fencing for the outbox relay lease: every takeover increments the lease's epoch, and a relay
-- records the epoch it published under on each row, so one that lost its lease cannot mark rows.
ALTER TABLE outbox_relay_lease ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS published_epoch bigint;
