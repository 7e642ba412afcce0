-- The dispatch service's tables.

-- Current state of every order's shipment (stream `dispatch-<orderId>`), written with its events.
CREATE TABLE IF NOT EXISTS shipments (
  id text PRIMARY KEY,
  order_id text NOT NULL UNIQUE,
  status text NOT NULL,
  shipping_cost bigint,
  version integer NOT NULL,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL
);
