-- Durable timers on the database's clock (platform/es/scheduler.ts). A timer is written with its
-- delay; `due_at` is computed by the database (now() + delay), never by the app, so a jump of the
-- app's clock moves no deadline. A timer that waits for a command of the same decision to leave
-- the outbox (a saga step's timeout) names that outbox row and stays unarmed (due_at NULL) until
-- the row is published; its clock then starts at the row's published_at.
ALTER TABLE scheduled_timers ALTER COLUMN due_at DROP NOT NULL;
ALTER TABLE scheduled_timers ADD COLUMN IF NOT EXISTS delay_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE scheduled_timers ADD COLUMN IF NOT EXISTS starts_after_outbox_id bigint;
CREATE INDEX IF NOT EXISTS scheduled_timers_unarmed ON scheduled_timers (kind) WHERE due_at IS NULL;
