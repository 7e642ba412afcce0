-- Durable timers (platform/es/scheduler.ts): saga step timeouts and due deliveries. One row per
-- timer id; a poller claims due rows with FOR UPDATE SKIP LOCKED and a short lease, fires them, and
-- deletes them. A process that dies while firing leaves the row to be claimed again after its lease.
CREATE TABLE IF NOT EXISTS scheduled_timers (
  id text PRIMARY KEY,
  kind text NOT NULL,
  due_at timestamptz NOT NULL,
  payload jsonb NOT NULL,
  claimed_until timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scheduled_timers_due ON scheduled_timers (kind, due_at);
