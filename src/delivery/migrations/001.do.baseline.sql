-- The delivery service's tables.

-- Current state of every order's delivery (stream `delivery-<orderId>`), written with its events.
-- A SCHEDULED delivery also has a durable timer (scheduled_timers, kind `delivery-due`) for due_at.
CREATE TABLE IF NOT EXISTS deliveries (
  id text PRIMARY KEY,
  order_id text NOT NULL UNIQUE,
  status text NOT NULL,
  due_at timestamptz NOT NULL,
  delivered_at timestamptz,
  version integer NOT NULL,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL
);
