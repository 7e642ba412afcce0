-- Request counters of the HTTP rate limits when every process of a deployment shares them
-- (RATE_LIMIT_STORE=database, the default on PostgreSQL): one row per key (an address, a client)
-- and window. Rows of windows long past are deleted as new requests come (see http/rate-limit.ts).
CREATE TABLE IF NOT EXISTS rate_limit_counters (
  key text PRIMARY KEY,
  window_start timestamptz NOT NULL,
  count integer NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_limit_counters_window ON rate_limit_counters (window_start);
