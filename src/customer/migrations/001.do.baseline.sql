-- The customer service's tables.

-- Current state of every customer stream (`customer-<customerId>`): how often their personal data
-- was erased, and when last.
CREATE TABLE IF NOT EXISTS customers (
  id text PRIMARY KEY,
  customer_id text NOT NULL UNIQUE,
  version integer NOT NULL,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL
);
