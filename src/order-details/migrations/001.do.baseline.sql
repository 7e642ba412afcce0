-- Seed 002's order service: the orders it learnt from orders.events, as /order-details shows them.
CREATE TABLE order_details (
  order_id text PRIMARY KEY,
  -- The order as ORDER_CREATED carried it (amounts in minor units), without its status.
  order_doc jsonb NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Status updates that arrived before their ORDER_CREATED: kept here (not in memory) so a restart
-- does not lose them, applied in arrival order when the order arrives.
CREATE TABLE order_details_pending_updates (
  seq bigserial PRIMARY KEY,
  order_id text NOT NULL,
  status text NOT NULL,
  event_id text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_details_pending_by_order ON order_details_pending_updates (order_id, seq);
