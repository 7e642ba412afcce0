-- The Create-Order saga's tables.

-- One row per order's saga: its whole state (history and deadlines included) in `state`, and what
-- operators and the auditor query as columns. A PARKED saga waits for a person; COMPLETED ones are
-- done (outcome DELIVERED or CANCELLED).
CREATE TABLE IF NOT EXISTS sagas (
  id text PRIMARY KEY,
  order_id text NOT NULL UNIQUE,
  status text NOT NULL,
  step text,
  attempt integer NOT NULL,
  outcome text,
  parked_reason text,
  next_deadline timestamptz,
  version integer NOT NULL,
  state jsonb NOT NULL,
  started_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sagas_by_status ON sagas (status, updated_at);
