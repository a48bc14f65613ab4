-- user_logins becomes a table partitioned by create_date month (declarative range partitions).
-- Why: each insert touches a random leaf page of the random-key indexes (message id, user id,
-- the two masks); on one table those indexes grow with all the history and stop fitting in
-- memory, so ingestion slowed as the table grew (0.72x the empty table's rate at 10 million
-- rows). Ingestion writes the current month, whose indexes stay small and cached, and an old
-- month can be detached without rewriting or long-locking the rest (login_partition_detach).
--
-- The exercise's table keeps its name and its columns (names, types, order): `LIKE` copies
-- them, with the service's columns, from the table as it is. Converting rewrites every row
-- once (about 11 s per million rows on a 2-core machine: bench/convert.ts), in this
-- migration's transaction.
--
-- What changes with it:
-- - The partition key must be in every unique index: `id` is unique with create_date, and the
--   idempotency key is (message_id, create_date). A message's create_date comes from its
--   SentTimestamp, which every delivery of it carries unchanged, so a redelivery meets its row.
-- - Rows without a create_date (the pre-created table may hold some) live in the default
--   partition, with any row written directly for a month that has no partition yet (ingestion
--   makes the month's partition before it writes): no insert is refused for want of a month.
--   When a month's partition is made, its rows move there from the default partition.
-- - pii_vault no longer has a foreign key to user_logins: a foreign key to a partitioned table
--   makes every DETACH check the whole vault under an ACCESS EXCLUSIVE lock of user_logins.
--   A statement trigger deletes the originals of deleted rows instead (ON DELETE CASCADE as
--   before), and TRUNCATE of user_logins empties the vault.
SET LOCAL statement_timeout = 0;

ALTER TABLE pii_vault DROP CONSTRAINT IF EXISTS pii_vault_login_id_fkey;
ALTER TABLE user_logins RENAME TO user_logins_unpartitioned;
DROP TRIGGER user_logins_summary_insert ON user_logins_unpartitioned;
DROP TRIGGER user_logins_summary_delete ON user_logins_unpartitioned;
DROP TRIGGER user_logins_summary_update ON user_logins_unpartitioned;

CREATE TABLE user_logins (LIKE user_logins_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING COMMENTS)
  PARTITION BY RANGE (create_date);
-- Rows without a date, and rows of months that have no partition yet.
CREATE TABLE user_logins_default PARTITION OF user_logins DEFAULT;

-- Creates the month's partition of user_logins when it has none; returns its name. Ingestion
-- calls it (once per month and process, outside its storing transaction) before it stores rows
-- of a month, and for the next month ahead of time. The partition is created on its own, takes
-- the month's rows from the default partition (rows written there before the month had a
-- partition: they keep their ids and their summary and vault entries), and is attached with a
-- CHECK matching its bounds: ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on user_logins, so
-- it never waits for or blocks ingestion (the default partition, which ingestion does not write,
-- is locked while ATTACH checks it). SECURITY DEFINER: the service's role needs no CREATE
-- privilege (grant it EXECUTE on this function; see docs/deploy-aws.md).
CREATE FUNCTION login_partition_ensure(month date) RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  first date := date_trunc('month', month)::date;
  part text := 'user_logins_' || to_char(first, 'YYYY_MM');
  attached constant text := 'SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = ''user_logins''::regclass AND inhrelid = to_regclass($1))';
  found boolean;
BEGIN
  IF month IS NULL THEN RETURN 'user_logins_default'; END IF;
  EXECUTE attached INTO found USING part;
  IF found THEN RETURN part; END IF;
  PERFORM pg_advisory_xact_lock(hashtext('login-ingest:partitions'));
  EXECUTE attached INTO found USING part;
  IF found THEN RETURN part; END IF;
  EXECUTE format('CREATE TABLE %I (LIKE user_logins)', part);
  EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (create_date IS NOT NULL AND create_date >= %L AND create_date < %L)',
                 part, part || '_range', first, (first + interval '1 month')::date);
  -- Directly on the partitions: no statement trigger of user_logins fires (the rows stay counted).
  EXECUTE format('WITH moved AS (DELETE FROM user_logins_default WHERE create_date >= %L AND create_date < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                 first, (first + interval '1 month')::date, part);
  EXECUTE format('ALTER TABLE user_logins ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, first, (first + interval '1 month')::date);
  RETURN part;
END
$$;
-- A SECURITY DEFINER function searches this schema, then pg_temp last, so a caller's temporary
-- table cannot stand in for user_logins.
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION login_partition_ensure(date) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION login_partition_ensure(date) FROM PUBLIC;

-- Detaches an ended month from user_logins and returns the detached table's new name (the
-- operator drops or archives it). The month's logins leave the duplicates summary (queued as
-- deletions, folded by the next refresh) and their originals leave the vault, both under a
-- SHARE lock of that month only; then DETACH takes its ACCESS EXCLUSIVE lock of user_logins for
-- the catalog change alone. Callers set lock_timeout so that it gives up rather than queue
-- ingestion behind a long query (src/cli/partitions.ts).
CREATE FUNCTION login_partition_detach(month date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  first date := date_trunc('month', month)::date;
  part text := 'user_logins_' || to_char(first, 'YYYY_MM');
  detached text := part || '_detached_' || to_char(clock_timestamp(), 'YYYYMMDD_HH24MISSUS');
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'user_logins'::regclass AND inhrelid = to_regclass(part)) THEN
    RAISE EXCEPTION 'user_logins has no partition for %', to_char(first, 'YYYY-MM') USING ERRCODE = 'undefined_table';
  END IF;
  IF first >= date_trunc('month', now())::date THEN
    RAISE EXCEPTION 'refusing to detach %: only months that have ended can be detached', to_char(first, 'YYYY-MM') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  EXECUTE format('LOCK TABLE %I IN SHARE MODE', part);
  EXECUTE format('INSERT INTO login_summary_pending (user_id, masked_ip, masked_device_id, seen, delta)
                  SELECT user_id, masked_ip, masked_device_id, create_date, -1 FROM %I
                  WHERE masked_ip IS NOT NULL OR masked_device_id IS NOT NULL', part);
  EXECUTE format('DELETE FROM pii_vault v USING %I l WHERE v.login_id = l.id', part);
  EXECUTE format('ALTER TABLE user_logins DETACH PARTITION %I', part);
  EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS %I', part, part || '_range');
  EXECUTE format('ALTER TABLE %I RENAME TO %I', part, detached);
  RETURN detached;
END
$$;
REVOKE ALL ON FUNCTION login_partition_detach(date) FROM PUBLIC;

-- A month for every month the rows have, this one and the next.
SELECT login_partition_ensure(m) FROM (
  SELECT DISTINCT date_trunc('month', create_date)::date AS m FROM user_logins_unpartitioned WHERE create_date IS NOT NULL
  UNION SELECT date_trunc('month', now())::date
  UNION SELECT (date_trunc('month', now()) + interval '1 month')::date) months;

-- The rows, with their ids (the summary already counts them: its triggers are not there yet).
INSERT INTO user_logins OVERRIDING SYSTEM VALUE SELECT * FROM user_logins_unpartitioned;
DO $$
DECLARE
  old_seq text := pg_get_serial_sequence('user_logins_unpartitioned', 'id');
  new_seq text := pg_get_serial_sequence('user_logins', 'id');
  last bigint;
  called boolean;
BEGIN
  EXECUTE format('SELECT last_value, is_called FROM %s', old_seq) INTO last, called;
  PERFORM setval(new_seq, last, called);
END
$$;

-- Who could read or write the table keeps that right on the new one.
DO $$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.oid = 'user_logins_unpartitioned'::regclass AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('GRANT %s ON user_logins TO %s', g.privilege_type, g.grantee);
  END LOOP;
END
$$;

DROP TABLE user_logins_unpartitioned;
DO $$
BEGIN
  EXECUTE format('ALTER SEQUENCE %s RENAME TO user_logins_id_seq', pg_get_serial_sequence('user_logins', 'id'));
END
$$;

-- The same indexes as before, with the partition key where uniqueness needs it; built once the
-- rows are in (each partition's index is built from its rows, faster than maintained per row).
ALTER TABLE user_logins ADD CONSTRAINT user_logins_id_key UNIQUE (id, create_date);
ALTER TABLE user_logins ADD CONSTRAINT user_logins_message_id_key UNIQUE (message_id, create_date);
CREATE INDEX user_logins_user_id_idx ON user_logins (user_id, id);
CREATE INDEX user_logins_masked_ip_idx ON user_logins (masked_ip, id) INCLUDE (user_id);
CREATE INDEX user_logins_masked_device_id_idx ON user_logins (masked_device_id, id) INCLUDE (user_id);
CREATE INDEX user_logins_create_date_idx ON user_logins (create_date, id);
CREATE INDEX user_logins_app_version_idx ON user_logins (app_version, id);
CREATE INDEX user_logins_app_version_text_idx ON user_logins (app_version_text, id);
CREATE INDEX user_logins_ip_prefix_net_idx ON user_logins (ip_prefix_net) INCLUDE (user_id) WHERE ip_prefix_net IS NOT NULL;

CREATE TRIGGER user_logins_summary_insert AFTER INSERT ON user_logins
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION login_summary_capture();
CREATE TRIGGER user_logins_summary_delete AFTER DELETE ON user_logins
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION login_summary_capture();
CREATE TRIGGER user_logins_summary_update AFTER UPDATE ON user_logins
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION login_summary_capture();

-- The originals go with their rows (what the foreign key's ON DELETE CASCADE did). After a
-- TRUNCATE a DELETE, not a TRUNCATE: `TRUNCATE user_logins, pii_vault` is one statement, and
-- a TRUNCATE of a table that statement is truncating would be refused.
CREATE FUNCTION user_logins_vault_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM pii_vault;
  ELSE
    DELETE FROM pii_vault v USING old_rows o WHERE v.login_id = o.id;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER user_logins_vault_delete AFTER DELETE ON user_logins
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION user_logins_vault_cascade();
CREATE TRIGGER user_logins_vault_truncate AFTER TRUNCATE ON user_logins
  FOR EACH STATEMENT EXECUTE FUNCTION user_logins_vault_cascade();
