-- The outbox relay's lease, sharded by key (platform/outbox/relay-lease.ts): one lease row per
-- shard, ids 0 … N-1, so several relays publish side by side; an outbox row belongs to shard
-- outbox_shard(message_key, N). The number of lease rows is the shard count every relay of the
-- database runs with (OUTBOX_RELAY_SHARDS); a relay that finds no other relay live reshards the table.
ALTER TABLE outbox_relay_lease DROP CONSTRAINT IF EXISTS outbox_relay_lease_id_check;
-- The one lease becomes shard 0 of one shard, keeping its holder, epoch and expiry: a relay of the
-- previous version (which only knows id 1) can neither renew it nor mark rows under it any more, and
-- the first relay to take it over waits out that relay's last publish, as after any expiry.
UPDATE outbox_relay_lease SET id = 0 WHERE id = 1;
ALTER TABLE outbox_relay_lease ADD CONSTRAINT outbox_relay_lease_shard CHECK (id >= 0 AND id < 256);
-- The relays that run on this database, each renewed with its claims: a relay that holds no shard
-- yet is counted too, so that the holders hand it its fair share.
CREATE TABLE IF NOT EXISTS outbox_relay_member (
  holder text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);
-- A key's shard: md5 rather than hashtext, whose result PostgreSQL does not promise to keep across
-- versions (a key that changed shards under a live relay could overtake itself).
CREATE OR REPLACE FUNCTION outbox_shard(message_key text, shards integer) RETURNS integer
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT (('x' || left(md5(message_key), 8))::bit(32)::bigint % shards)::integer $$;
