-- Seed 002's cart service keeps the orders it created (the seed's in-memory store), so that a
-- second create of one order id is refused and a status update names an order that exists.
CREATE TABLE shop_orders (
  order_id text PRIMARY KEY,
  customer_id text NOT NULL,
  order_date timestamptz NOT NULL,
  items jsonb NOT NULL,
  -- Minor units (cents), like every amount the platform stores.
  total_amount bigint NOT NULL,
  currency text NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
