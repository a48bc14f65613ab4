-- Masked values seen exactly once, with that login's user and date, so that the fold knows a
-- value's state without counting it in user_logins. Under migration 010 the fold counted every
-- value outside the summary from user_logins; since migration 011 that reads one index per
-- month and field (32 probes a login with 16 months), and at 10,000,000 rows the fold cost
-- 318 µs a login against 41 µs before. Now a value is in exactly one of three places: the
-- summary (two logins or more), this table (one), or neither (none), and the fold moves it
-- between them from the batch's deltas; only the rare value whose batch both adds and removes
-- logins, or that falls from the summary to one login, is counted from user_logins (in the
-- fold's one snapshot). The fold alone writes this table, under its advisory lock.
CREATE TABLE login_single_values (
  field varchar(16) NOT NULL,
  masked_value varchar(256) NOT NULL,
  user_id varchar(128),
  seen date,
  PRIMARY KEY (field, masked_value)
);
COMMENT ON TABLE login_single_values IS 'Masked values with exactly one folded login (written by login_duplicates_refresh only)';

-- Built from a folded state: the previous fold takes every committed pending row while writers
-- of user_logins wait on the pending table (ingestion stalls for the build, nothing is lost;
-- about 9 s per million rows), so user_logins then holds exactly what the summary counts.
SELECT pg_advisory_xact_lock(hashtext('login-ingest:duplicates'));
LOCK TABLE login_summary_pending IN SHARE ROW EXCLUSIVE MODE;
SET LOCAL statement_timeout = 0;
SELECT login_duplicates_refresh();
INSERT INTO login_single_values (field, masked_value, user_id, seen)
  SELECT 'ip', masked_ip, min(user_id), min(create_date) FROM user_logins WHERE masked_ip IS NOT NULL GROUP BY masked_ip HAVING count(*) = 1
  UNION ALL
  SELECT 'device_id', masked_device_id, min(user_id), min(create_date) FROM user_logins WHERE masked_device_id IS NOT NULL GROUP BY masked_device_id HAVING count(*) = 1;

-- Folds every committed pending row into the summary and the single values; returns how many.
-- The first statement is one snapshot: the pending rows it takes are exactly those of the
-- user_logins rows it sees that were not folded before. Every read of a large table is a
-- LATERAL index probe (LIMIT/OFFSET keep the planner from flattening it into a join), and no
-- two batch-sized sets are joined, so the cost is linear in the batch whatever the planner
-- estimates for it. Callers hold the advisory lock login-ingest:duplicates (see
-- src/logins/summary.ts): one session at a time writes the summary, in key order, so its row
-- locks cannot deadlock.
CREATE OR REPLACE FUNCTION login_duplicates_refresh() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  taken integer;
  fallen_fields text[];
  fallen_values text[];
  emptied_fields text[];
  emptied_values text[];
  emptied_users text[];
BEGIN
  WITH gone AS (
    DELETE FROM login_summary_pending RETURNING user_id, masked_ip, masked_device_id, seen, delta
  ), batch AS (
    SELECT field, masked_value, user_id, sum(delta) AS d, min(seen) AS f, max(seen) AS l FROM (
      SELECT 'ip'::varchar(16) AS field, masked_ip AS masked_value, user_id, seen, delta FROM gone WHERE masked_ip IS NOT NULL
      UNION ALL
      SELECT 'device_id'::varchar(16), masked_device_id, user_id, seen, delta FROM gone WHERE masked_device_id IS NOT NULL) x
    GROUP BY 1, 2, 3
  ), summarized AS (
    -- each batch row with its value's summary entry, or else its single login, when it has one
    SELECT b.*, s.logins AS value_logins, o.found IS NOT NULL AS once, o.user_id AS once_user, o.seen AS once_seen
    FROM batch b
    LEFT JOIN LATERAL (
      SELECT logins FROM login_duplicates s WHERE s.field = b.field AND s.masked_value = b.masked_value LIMIT 1) s ON true
    LEFT JOIN LATERAL (
      SELECT true AS found, o.user_id, o.seen FROM login_single_values o
      WHERE s.logins IS NULL AND o.field = b.field AND o.masked_value = b.masked_value LIMIT 1) o ON true
  ),
  -- 1. Values already in the summary: the batch's deltas, per user in the pairs (distinct users
  -- stay exact under deletions), then per value.
  pair_changes AS (
    SELECT c.field, c.masked_value, c.user_id, c.d, c.f, c.l, coalesce(p.logins, 0) AS old, coalesce(p.logins, 0) + c.d AS new
    FROM summarized c
    LEFT JOIN LATERAL (
      SELECT logins FROM login_duplicate_pairs p
      WHERE c.user_id IS NOT NULL AND p.field = c.field AND p.masked_value = c.masked_value AND p.user_id = c.user_id
      UNION ALL
      SELECT logins FROM login_duplicate_pairs p
      WHERE c.user_id IS NULL AND p.field = c.field AND p.masked_value = c.masked_value AND p.user_id IS NULL
      LIMIT 1) p ON true
    WHERE c.value_logins IS NOT NULL
  ), pairs_set AS (
    INSERT INTO login_duplicate_pairs AS p (field, masked_value, user_id, logins)
      SELECT field, masked_value, user_id, new FROM pair_changes WHERE d <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (field, masked_value, user_id) DO UPDATE SET logins = EXCLUDED.logins
    RETURNING p.field, p.masked_value, p.user_id, p.logins
  ), values_set AS (
    -- every one of these values has its row (only the refresher writes the summary): an upsert
    -- is its update by key
    INSERT INTO login_duplicates AS s (field, masked_value, logins, users, first_seen, last_seen)
      SELECT field, masked_value, sum(d), sum(CASE WHEN user_id IS NULL THEN 0 ELSE (new > 0)::int - (old > 0)::int END), min(f), max(l)
      FROM pair_changes GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (field, masked_value) DO UPDATE SET logins = s.logins + EXCLUDED.logins, users = s.users + EXCLUDED.users,
      first_seen = least(s.first_seen, EXCLUDED.first_seen), last_seen = greatest(s.last_seen, EXCLUDED.last_seen)
    RETURNING s.field, s.masked_value, s.logins
  ),
  -- Summary values the batch brings down to one login: that login is found in user_logins (this
  -- snapshot holds the folded logins and the batch's) and becomes the value's single login.
  fallen_to_one AS (
    SELECT field, masked_value FROM summarized WHERE value_logins IS NOT NULL
    GROUP BY field, masked_value, value_logins HAVING value_logins + sum(d) = 1
  ), remaining AS (
    SELECT f.field, f.masked_value, min(u.user_id) AS user_id, min(u.create_date) AS seen
    FROM fallen_to_one f CROSS JOIN LATERAL (
      SELECT user_id, create_date FROM user_logins WHERE f.field = 'ip' AND masked_ip = f.masked_value
      UNION ALL
      SELECT user_id, create_date FROM user_logins WHERE f.field = 'device_id' AND masked_device_id = f.masked_value
      LIMIT 2) u
    GROUP BY 1, 2 HAVING count(*) = 1
  ),
  -- 2. Values outside the summary, with the value's net change and its single login.
  outside AS (
    SELECT field, masked_value, user_id, d, f, l, once, once_user, once_seen,
           once::int + sum(d) OVER v AS total, bool_and(d > 0) OVER v AS adding, bool_and(d < 0) OVER v AS removing,
           least(min(f) OVER v, once_seen) AS vf, greatest(max(l) OVER v, once_seen) AS vl,
           row_number() OVER v AS rn
    FROM summarized WHERE value_logins IS NULL
    WINDOW v AS (PARTITION BY field, masked_value)
  ),
  -- 2a. Only added to, and now seen twice or more: the value enters the summary with the batch's
  -- logins and its single one.
  entering AS (
    SELECT field, masked_value, user_id, sum(n) AS n, min(vf) AS f, max(vl) AS l FROM (
      SELECT field, masked_value, user_id, d AS n, vf, vl FROM outside WHERE adding AND total >= 2
      UNION ALL
      SELECT field, masked_value, once_user, 1, vf, vl FROM outside WHERE adding AND total >= 2 AND once AND rn = 1) x
    GROUP BY 1, 2, 3
  ),
  -- 2b. Both added to and taken from in one batch (rare): counted from user_logins, in this
  -- snapshot; a value with no login left yields one row with n = 0.
  mixed AS (
    SELECT field, masked_value FROM outside WHERE NOT adding AND NOT removing AND rn = 1
  ), counted AS (
    SELECT c.field, c.masked_value, u.user_id, count(u.create_date) AS n, min(u.create_date) AS f, max(u.create_date) AS l
    FROM mixed c LEFT JOIN LATERAL (
      SELECT user_id, coalesce(create_date, '-infinity') AS create_date FROM user_logins WHERE c.field = 'ip' AND masked_ip = c.masked_value
      UNION ALL
      SELECT user_id, coalesce(create_date, '-infinity') FROM user_logins WHERE c.field = 'device_id' AND masked_device_id = c.masked_value
      OFFSET 0) u ON true
    GROUP BY 1, 2, 3
  ), per_value AS (
    SELECT field, masked_value, user_id, n, sum(n) OVER v AS logins, count(user_id) FILTER (WHERE n > 0) OVER v AS users,
           min(f) OVER v AS f, max(l) OVER v AS l, row_number() OVER v AS rn
    FROM (SELECT field, masked_value, user_id, n, f, l FROM entering
          UNION ALL
          SELECT field, masked_value, user_id, n, nullif(f, '-infinity'), nullif(l, '-infinity') FROM counted) e
    WINDOW v AS (PARTITION BY field, masked_value)
  ), pairs_entered AS (
    INSERT INTO login_duplicate_pairs (field, masked_value, user_id, logins)
      SELECT field, masked_value, user_id, n FROM per_value WHERE logins >= 2 AND n > 0 ORDER BY 1, 2, 3
  ), values_entered AS (
    INSERT INTO login_duplicates (field, masked_value, logins, users, first_seen, last_seen)
      SELECT field, masked_value, logins, users, f, l FROM per_value WHERE logins >= 2 AND rn = 1
      ORDER BY field, masked_value
  ),
  -- 3. The single values: out when the value enters the summary or loses its login, in when a
  -- value is seen for the first time or keeps one login (the keys of the two are disjoint).
  singles_out AS (
    DELETE FROM login_single_values o USING (
      SELECT field, masked_value FROM outside WHERE once AND rn = 1 AND (removing OR (adding AND total >= 2))
      UNION ALL
      SELECT field, masked_value FROM per_value WHERE rn = 1 AND logins <> 1) k
    WHERE o.field = k.field AND o.masked_value = k.masked_value
  ), singles_in AS (
    INSERT INTO login_single_values AS o (field, masked_value, user_id, seen)
      SELECT field, masked_value, user_id, seen FROM (
        SELECT field, masked_value, user_id, f AS seen FROM outside WHERE adding AND total = 1
        UNION ALL
        SELECT field, masked_value, user_id, f FROM per_value WHERE logins = 1 AND n = 1
        UNION ALL
        SELECT field, masked_value, user_id, seen FROM remaining) s
      ORDER BY 1, 2
    ON CONFLICT (field, masked_value) DO UPDATE SET user_id = EXCLUDED.user_id, seen = EXCLUDED.seen
  )
  SELECT (SELECT count(*) FROM gone),
         (SELECT array_agg(field) FROM values_set WHERE logins < 2), (SELECT array_agg(masked_value) FROM values_set WHERE logins < 2),
         (SELECT array_agg(field) FROM pairs_set WHERE logins <= 0), (SELECT array_agg(masked_value) FROM pairs_set WHERE logins <= 0),
         (SELECT array_agg(user_id) FROM pairs_set WHERE logins <= 0)
    INTO taken, fallen_fields, fallen_values, emptied_fields, emptied_values, emptied_users;

  -- 4. After deletions: values under two logins leave the summary with their pairs (one left
  -- with a single login is now in login_single_values), and a user left with no login of a
  -- value that stays loses its pair.
  IF fallen_fields IS NOT NULL THEN
    DELETE FROM login_duplicates s USING unnest(fallen_fields, fallen_values) AS f(field, masked_value)
      WHERE s.field = f.field AND s.masked_value = f.masked_value;
    DELETE FROM login_duplicate_pairs p USING unnest(fallen_fields, fallen_values) AS f(field, masked_value)
      WHERE p.field = f.field AND p.masked_value = f.masked_value;
  END IF;
  IF emptied_fields IS NOT NULL THEN
    DELETE FROM login_duplicate_pairs p USING unnest(emptied_fields, emptied_values, emptied_users) AS e(field, masked_value, user_id)
      WHERE p.field = e.field AND p.masked_value = e.masked_value AND p.user_id IS NOT DISTINCT FROM e.user_id AND p.logins <= 0;
  END IF;
  RETURN taken;
END
$$;
