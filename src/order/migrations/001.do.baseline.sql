-- The order service's tables. IF NOT EXISTS: databases created before migrations were versioned
-- already have them.

-- Current state of every order (seed 001's "orders table"), written with its events.
CREATE TABLE IF NOT EXISTS orders (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL,
  version integer NOT NULL,
  state jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

-- Read model: orders by customer, by status, newest first; kept by the order_read_model projection.
CREATE TABLE IF NOT EXISTS order_read_model (
  id text PRIMARY KEY,
  customer_id text NOT NULL,
  status text NOT NULL,
  total_amount bigint NOT NULL,
  currency text NOT NULL,
  version integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS order_read_model_by_customer ON order_read_model (customer_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS order_read_model_by_status ON order_read_model (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS order_read_model_newest ON order_read_model (created_at DESC, id DESC);
