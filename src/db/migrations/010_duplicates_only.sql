-- The duplicates summary keeps only values seen at least twice. Most masked values are seen
-- once; under migration 009 each of them cost a pair row and a summary row (two upserts into
-- random-key indexes per value, about 100 µs of PostgreSQL CPU per login). Now a value enters
-- the summary when its second login is folded in, counted from user_logins itself, and leaves
-- it when deletions bring it under two. A value outside the summary has at most one folded
-- login, so counting it reads at most the batch's rows of it: the popular values (a shared
-- NAT address) are the ones inside, updated by deltas as before.

DELETE FROM login_duplicates WHERE logins < 2;
DELETE FROM login_duplicate_pairs p
  WHERE NOT EXISTS (SELECT 1 FROM login_duplicates s WHERE s.field = p.field AND s.masked_value = p.masked_value);

DROP FUNCTION login_duplicates_refresh(integer);

-- Folds every committed pending row into the summary; returns how many. The first statement
-- is one snapshot: the pending rows it takes are exactly those of the user_logins rows it
-- counts that were not folded before, so a value counted from user_logins is counted once.
-- Every read of a large table is a LATERAL index probe (LIMIT/OFFSET keep the planner from
-- flattening it into a join), and no two batch-sized sets are joined, so the cost is linear in
-- the batch whatever the planner estimates for it. Callers hold the advisory lock
-- login-ingest:duplicates (see src/logins/summary.ts): one session at a time writes the
-- summary, in key order, so its row locks cannot deadlock.
CREATE FUNCTION login_duplicates_refresh() RETURNS integer LANGUAGE plpgsql AS $$
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
    -- each batch row with its value's summary entry, when it has one
    SELECT b.*, s.logins AS value_logins FROM batch b
    LEFT JOIN LATERAL (
      SELECT logins FROM login_duplicates s WHERE s.field = b.field AND s.masked_value = b.masked_value LIMIT 1) s ON true
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
  -- 2. Values outside the summary that the batch added logins to (outside, a value has at most
  -- one folded login, so one it loses cannot bring it in): counted from user_logins, which in
  -- this snapshot holds their folded logins and the batch's; with two or more they enter.
  candidates AS (
    SELECT field, masked_value FROM summarized WHERE value_logins IS NULL GROUP BY 1, 2 HAVING sum(d) > 0
  ), stored AS (
    SELECT c.field, c.masked_value, u.user_id, count(*) AS n, min(u.create_date) AS f, max(u.create_date) AS l
    FROM candidates c CROSS JOIN LATERAL (
      SELECT user_id, create_date FROM user_logins WHERE c.field = 'ip' AND masked_ip = c.masked_value
      UNION ALL
      SELECT user_id, create_date FROM user_logins WHERE c.field = 'device_id' AND masked_device_id = c.masked_value
      OFFSET 0) u
    GROUP BY 1, 2, 3
  ), per_value AS (
    SELECT field, masked_value, user_id, n,
           sum(n) OVER v AS logins, count(user_id) OVER v AS users, min(f) OVER v AS f, max(l) OVER v AS l
    FROM stored WINDOW v AS (PARTITION BY field, masked_value)
  ), pairs_entered AS (
    INSERT INTO login_duplicate_pairs (field, masked_value, user_id, logins)
      SELECT field, masked_value, user_id, n FROM per_value WHERE logins >= 2 ORDER BY 1, 2, 3
  ), values_entered AS (
    INSERT INTO login_duplicates (field, masked_value, logins, users, first_seen, last_seen)
      SELECT DISTINCT ON (field, masked_value) field, masked_value, logins, users, f, l FROM per_value WHERE logins >= 2
      ORDER BY field, masked_value
  )
  SELECT (SELECT count(*) FROM gone),
         (SELECT array_agg(field) FROM values_set WHERE logins < 2), (SELECT array_agg(masked_value) FROM values_set WHERE logins < 2),
         (SELECT array_agg(field) FROM pairs_set WHERE logins <= 0), (SELECT array_agg(masked_value) FROM pairs_set WHERE logins <= 0),
         (SELECT array_agg(user_id) FROM pairs_set WHERE logins <= 0)
    INTO taken, fallen_fields, fallen_values, emptied_fields, emptied_values, emptied_users;

  -- 3. After deletions: values under two logins leave the summary with their pairs, and a user
  -- left with no login of a value that stays loses its pair.
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
