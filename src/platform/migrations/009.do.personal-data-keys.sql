-- Every data subject's (customer's) data keys, wrapped by the key-encryption key (platform/personal-data).
-- A subject's newest key seals new personal fields; older versions stay to open what they sealed, so
-- keys rotate without rewriting events. Erasure (crypto-shredding) sets `wrapped` to NULL and
-- `erased_at`: the row stays, so that a version is never used twice and a read knows the value was
-- erased rather than lost.
CREATE TABLE IF NOT EXISTS personal_data_keys (
  subject text NOT NULL,
  version integer NOT NULL,
  kek_id text,
  wrapped bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  erased_at timestamptz,
  PRIMARY KEY (subject, version),
  CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS personal_data_keys_by_kek ON personal_data_keys (kek_id) WHERE wrapped IS NOT NULL;
