-- The payment service's tables.

-- Current state of every order's one payment (stream `payment-<orderId>`), written with its events.
-- `processed_by` is the instance that decided the payment (captured or declined it): with several
-- payment processes in one consumer group it shows that each took part.
CREATE TABLE IF NOT EXISTS payments (
  id text PRIMARY KEY,
  order_id text NOT NULL UNIQUE,
  customer_id text,
  status text NOT NULL,
  amount bigint,
  currency text,
  version integer NOT NULL,
  state jsonb NOT NULL,
  processed_by text NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_status ON payments (status);
