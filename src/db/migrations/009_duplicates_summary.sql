-- GET /logins/duplicates reads a summary instead of grouping every row on each call.
-- Writers of user_logins only append to login_summary_pending (statement triggers with
-- transition tables, so the ingestion statement is unchanged and a redelivery that inserts
-- nothing adds nothing); one refresher at a time (advisory lock) folds the pending rows into
-- the pair and summary tables in key order, so competing replicas can neither deadlock nor
-- double-count. Counts and users are exact once the pending rows are folded in.
CREATE TABLE login_summary_pending (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id varchar(128),
  masked_ip varchar(256),
  masked_device_id varchar(256),
  seen date,
  delta smallint NOT NULL
);

-- One row per masked value and user, so distinct users stay exact under deletions.
CREATE TABLE login_duplicate_pairs (
  field varchar(16) NOT NULL,
  masked_value varchar(256) NOT NULL,
  user_id varchar(128),
  logins bigint NOT NULL,
  CONSTRAINT login_duplicate_pairs_key UNIQUE NULLS NOT DISTINCT (field, masked_value, user_id)
);

-- One row per masked value; first_seen and last_seen are create_date bounds of every login
-- counted so far (a deleted login's date may still bound them: min and max are not undone).
CREATE TABLE login_duplicates (
  field varchar(16) NOT NULL,
  masked_value varchar(256) NOT NULL,
  logins bigint NOT NULL,
  users integer NOT NULL,
  first_seen date,
  last_seen date,
  PRIMARY KEY (field, masked_value)
);
-- The report's order; values seen once (most of them) cost nothing in it.
CREATE INDEX login_duplicates_report_idx ON login_duplicates (logins DESC, field, masked_value) INCLUDE (users, first_seen, last_seen) WHERE logins >= 2;

CREATE FUNCTION login_summary_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO login_summary_pending (user_id, masked_ip, masked_device_id, seen, delta)
      SELECT user_id, masked_ip, masked_device_id, create_date, 1 FROM new_rows
      WHERE masked_ip IS NOT NULL OR masked_device_id IS NOT NULL;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO login_summary_pending (user_id, masked_ip, masked_device_id, seen, delta)
      SELECT user_id, masked_ip, masked_device_id, create_date, -1 FROM old_rows
      WHERE masked_ip IS NOT NULL OR masked_device_id IS NOT NULL;
  ELSE
    -- Only rows whose counted columns changed (the rotation's switch): the old value out, the new in.
    INSERT INTO login_summary_pending (user_id, masked_ip, masked_device_id, seen, delta)
      SELECT c.user_id, c.masked_ip, c.masked_device_id, c.create_date, c.delta
      FROM old_rows o JOIN new_rows n ON n.id = o.id
      CROSS JOIN LATERAL (VALUES (o.user_id, o.masked_ip, o.masked_device_id, o.create_date, -1),
                                 (n.user_id, n.masked_ip, n.masked_device_id, n.create_date, 1))
        AS c(user_id, masked_ip, masked_device_id, create_date, delta)
      WHERE (o.masked_ip, o.masked_device_id, o.user_id) IS DISTINCT FROM (n.masked_ip, n.masked_device_id, n.user_id)
        AND (c.masked_ip IS NOT NULL OR c.masked_device_id IS NOT NULL);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER user_logins_summary_insert AFTER INSERT ON user_logins
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION login_summary_capture();
CREATE TRIGGER user_logins_summary_delete AFTER DELETE ON user_logins
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION login_summary_capture();
CREATE TRIGGER user_logins_summary_update AFTER UPDATE ON user_logins
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION login_summary_capture();

-- Folds up to `batch` committed pending rows (oldest first) into the summary; returns how many it took.
-- Callers hold the advisory lock login-ingest:duplicates (see src/logins/summary.ts).
CREATE FUNCTION login_duplicates_refresh(batch integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  taken integer;
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS login_summary_batch (field varchar(16), masked_value varchar(256), user_id varchar(128), d bigint, f date, l date) ON COMMIT DELETE ROWS;
  WITH gone AS (
    DELETE FROM login_summary_pending WHERE id IN (SELECT id FROM login_summary_pending ORDER BY id LIMIT batch)
    RETURNING user_id, masked_ip, masked_device_id, seen, delta
  ), fields AS (
    SELECT 'ip'::varchar(16) AS field, masked_ip AS masked_value, user_id, seen, delta FROM gone WHERE masked_ip IS NOT NULL
    UNION ALL
    SELECT 'device_id', masked_device_id, user_id, seen, delta FROM gone WHERE masked_device_id IS NOT NULL
  )
  , grouped AS (
    INSERT INTO login_summary_batch SELECT field, masked_value, user_id, sum(delta), min(seen), max(seen) FROM fields GROUP BY 1, 2, 3
  )
  SELECT count(*) INTO taken FROM gone;
  IF taken = 0 THEN RETURN 0; END IF;

  -- In key order: the one refresher at a time (advisory lock) takes row locks in the same order as any other would.
  WITH pairs AS (
    INSERT INTO login_duplicate_pairs AS p (field, masked_value, user_id, logins)
      SELECT field, masked_value, user_id, d FROM login_summary_batch WHERE d <> 0 ORDER BY field, masked_value, user_id
    ON CONFLICT (field, masked_value, user_id) DO UPDATE SET logins = p.logins + EXCLUDED.logins
    RETURNING p.field, p.masked_value, p.user_id, p.logins
  ), per_value AS (
    SELECT b.field, b.masked_value, sum(b.d) AS d,
           coalesce(sum(CASE WHEN b.user_id IS NULL OR p.logins IS NULL THEN 0 ELSE (p.logins > 0)::int - (p.logins - b.d > 0)::int END), 0) AS du,
           min(b.f) AS f, max(b.l) AS l
    FROM login_summary_batch b
    LEFT JOIN pairs p ON p.field = b.field AND p.masked_value = b.masked_value AND p.user_id IS NOT DISTINCT FROM b.user_id
    GROUP BY 1, 2
  )
  INSERT INTO login_duplicates AS s (field, masked_value, logins, users, first_seen, last_seen)
    SELECT field, masked_value, d, du, f, l FROM per_value ORDER BY field, masked_value
  ON CONFLICT (field, masked_value) DO UPDATE SET logins = s.logins + EXCLUDED.logins, users = s.users + EXCLUDED.users,
    first_seen = least(s.first_seen, EXCLUDED.first_seen), last_seen = greatest(s.last_seen, EXCLUDED.last_seen);

  IF EXISTS (SELECT 1 FROM login_summary_batch WHERE d < 0) THEN
    DELETE FROM login_duplicate_pairs p USING login_summary_batch b
      WHERE b.d < 0 AND p.field = b.field AND p.masked_value = b.masked_value AND p.user_id IS NOT DISTINCT FROM b.user_id AND p.logins <= 0;
    DELETE FROM login_duplicates s USING login_summary_batch b
      WHERE b.d < 0 AND s.field = b.field AND s.masked_value = b.masked_value AND s.logins <= 0;
  END IF;
  TRUNCATE login_summary_batch;
  RETURN taken;
END
$$;

-- The rows already there (the exercise's pre-created table, or a service's history) are counted once here.
INSERT INTO login_duplicate_pairs (field, masked_value, user_id, logins)
  SELECT 'ip', masked_ip, user_id, count(*) FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY 2, 3
  UNION ALL
  SELECT 'device_id', masked_device_id, user_id, count(*) FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY 2, 3;
INSERT INTO login_duplicates (field, masked_value, logins, users, first_seen, last_seen)
  SELECT 'ip', masked_ip, count(*), count(DISTINCT user_id), min(create_date), max(create_date) FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY 2
  UNION ALL
  SELECT 'device_id', masked_device_id, count(*), count(DISTINCT user_id), min(create_date), max(create_date) FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY 2;
