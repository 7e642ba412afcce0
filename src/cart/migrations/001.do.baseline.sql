-- Seed 004's carts: the current state of every cart, written in the transaction that appends its
-- events (the platform's event store) and puts them in the outbox for cart-events.
CREATE TABLE carts (
  id text PRIMARY KEY,
  version integer NOT NULL,
  state jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
