-- Dead letters (platform/dead-letters): the console's index of what every reliable consumer gave
-- up on. The record itself stays on `<topic>-dlq`, where Kafka's own tools read it; this row is
-- written after that record was published, with its position there, and holds the state an
-- operator changes (open, redriven, discarded).
CREATE TABLE IF NOT EXISTS dead_letters (
  id bigserial PRIMARY KEY,
  group_id text NOT NULL,
  -- Where the message was consumed from (the topic as the consumer names it).
  topic text NOT NULL,
  partition integer NOT NULL,
  message_offset text NOT NULL,
  message_key text NOT NULL,
  event_id text,
  reason text NOT NULL,
  -- { message, code?, stack? }
  error jsonb NOT NULL,
  attempts integer NOT NULL,
  headers jsonb NOT NULL,
  payload text NOT NULL,
  payload_truncated boolean NOT NULL DEFAULT false,
  payload_bytes integer NOT NULL,
  dlq_topic text NOT NULL,
  dlq_partition integer,
  dlq_offset text,
  failed_at timestamptz NOT NULL,
  state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'redriven', 'discarded')),
  resolved_at timestamptz,
  resolved_by text,
  -- How it was resolved: { to: 'consumer' | 'topic', actionId, comment? }
  resolution jsonb,
  -- A message dead-lettered twice (redelivered before its offset was committed) is indexed once.
  UNIQUE (group_id, topic, partition, message_offset)
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (state, topic, group_id, reason, id);
CREATE INDEX IF NOT EXISTS dead_letters_key ON dead_letters (message_key, id);

-- Per-key parking: a key of a consumer group whose message was dead-lettered waits for it. Later
-- messages of that key in that group go to parked_messages, in order, instead of their handler,
-- until an operator redrives or discards the blocking dead letter.
CREATE TABLE IF NOT EXISTS parked_keys (
  group_id text NOT NULL,
  message_key text NOT NULL,
  topic text NOT NULL,
  -- The dead letter the key waits for (a redrive that fails again moves it to the new one).
  dead_letter_id bigint NOT NULL REFERENCES dead_letters (id),
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, message_key)
);

CREATE TABLE IF NOT EXISTS parked_messages (
  seq bigserial PRIMARY KEY,
  group_id text NOT NULL,
  message_key text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  message_offset text NOT NULL,
  event_id text,
  headers jsonb NOT NULL,
  payload text NOT NULL,
  message_timestamp timestamptz NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  -- A message redelivered after it was parked is parked once.
  UNIQUE (group_id, topic, partition, message_offset)
);
CREATE INDEX IF NOT EXISTS parked_messages_key ON parked_messages (group_id, message_key, seq);

-- Every operator action on dead letters: who, when, what, how many.
CREATE TABLE IF NOT EXISTS dead_letter_actions (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,
  -- redrive | discard
  action text NOT NULL,
  -- consumer | topic (a redrive's destination); null for a discard
  target text,
  -- The selection as asked: { ids } or { topic, group, reason, key }
  selection jsonb NOT NULL,
  dry_run boolean NOT NULL DEFAULT false,
  matched integer NOT NULL,
  done integer NOT NULL,
  comment text,
  -- running | completed | stopped (a bulk action cut short) | failed
  status text NOT NULL DEFAULT 'completed',
  finished_at timestamptz
);
