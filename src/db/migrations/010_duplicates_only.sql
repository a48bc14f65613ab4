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

-- Folds every committed pending row into the summary; returns how many. One statement, so one
-- snapshot: the pending rows it takes are exactly those of the user_logins rows it sees that
-- were not folded before, and a value counted from user_logins is counted once. Callers hold
-- the advisory lock login-ingest:duplicates (see src/logins/summary.ts), so one session at a
-- time writes the summary and its row locks cannot deadlock; rows are written in key order.
CREATE FUNCTION login_duplicates_refresh() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  taken integer;
BEGIN
  WITH gone AS (
    DELETE FROM login_summary_pending RETURNING user_id, masked_ip, masked_device_id, seen, delta
  ), batch AS (
    SELECT field, masked_value, user_id, sum(delta) AS d, min(seen) AS f, max(seen) AS l FROM (
      SELECT 'ip'::varchar(16) AS field, masked_ip AS masked_value, user_id, seen, delta FROM gone WHERE masked_ip IS NOT NULL
      UNION ALL
      SELECT 'device_id'::varchar(16), masked_device_id, user_id, seen, delta FROM gone WHERE masked_device_id IS NOT NULL) x
    GROUP BY 1, 2, 3
  ), touched AS (
    SELECT field, masked_value, sum(d) AS d, min(f) AS f, max(l) AS l FROM batch GROUP BY 1, 2
  ),
  -- 1. Values already in the summary: the batch's deltas, per user in the pairs (distinct users
  -- stay exact under deletions); a value brought under two logins leaves, with its pairs.
  known AS (
    SELECT t.field, t.masked_value, t.d, t.f, t.l, s.logins + t.d < 2 AS fallen
    FROM touched t JOIN login_duplicates s ON s.field = t.field AND s.masked_value = t.masked_value
  ), pair_changes AS (
    SELECT b.field, b.masked_value, b.user_id, b.d, b.f, b.l, coalesce(p.logins, 0) AS old, coalesce(p.logins, 0) + b.d AS new
    FROM batch b JOIN known k ON k.field = b.field AND k.masked_value = b.masked_value AND NOT k.fallen
    LEFT JOIN LATERAL (
      SELECT logins FROM login_duplicate_pairs p
      WHERE b.user_id IS NOT NULL AND p.field = b.field AND p.masked_value = b.masked_value AND p.user_id = b.user_id
      UNION ALL
      SELECT logins FROM login_duplicate_pairs p
      WHERE b.user_id IS NULL AND p.field = b.field AND p.masked_value = b.masked_value AND p.user_id IS NULL) p ON true
  ), pairs_set AS (
    INSERT INTO login_duplicate_pairs AS p (field, masked_value, user_id, logins)
      SELECT field, masked_value, user_id, new FROM pair_changes WHERE new > 0 AND d <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (field, masked_value, user_id) DO UPDATE SET logins = EXCLUDED.logins
  ), pairs_emptied AS (
    DELETE FROM login_duplicate_pairs p USING pair_changes c
    WHERE c.new <= 0 AND p.field = c.field AND p.masked_value = c.masked_value AND p.user_id IS NOT DISTINCT FROM c.user_id
  ), pairs_fallen AS (
    DELETE FROM login_duplicate_pairs p USING known k WHERE k.fallen AND p.field = k.field AND p.masked_value = k.masked_value
  ), values_fallen AS (
    DELETE FROM login_duplicates s USING known k WHERE k.fallen AND s.field = k.field AND s.masked_value = k.masked_value
  ), values_set AS (
    UPDATE login_duplicates s SET logins = s.logins + v.d, users = s.users + v.du,
      first_seen = least(s.first_seen, v.f), last_seen = greatest(s.last_seen, v.l)
    FROM (
      -- per value from the pair changes alone (every batch row of a known value is one)
      SELECT field, masked_value, sum(d) AS d, min(f) AS f, max(l) AS l,
             sum(CASE WHEN user_id IS NULL THEN 0 ELSE (new > 0)::int - (old > 0)::int END) AS du
      FROM pair_changes GROUP BY 1, 2 ORDER BY 1, 2) v
    WHERE s.field = v.field AND s.masked_value = v.masked_value
  ),
  -- 2. Values outside the summary that the batch added logins to (outside, a value has at most
  -- one folded login, so one it loses cannot bring it in): counted from user_logins, which in
  -- this snapshot holds their folded logins and the batch's; with two or more they enter.
  candidates AS (
    SELECT t.field, t.masked_value FROM touched t
    WHERE t.d > 0 AND NOT EXISTS (SELECT 1 FROM login_duplicates s WHERE s.field = t.field AND s.masked_value = t.masked_value)
  ), stored AS (
    SELECT c.field, c.masked_value, u.user_id, count(*) AS n, min(u.create_date) AS f, max(u.create_date) AS l
    FROM candidates c CROSS JOIN LATERAL (
      SELECT user_id, create_date FROM user_logins WHERE c.field = 'ip' AND masked_ip = c.masked_value
      UNION ALL
      SELECT user_id, create_date FROM user_logins WHERE c.field = 'device_id' AND masked_device_id = c.masked_value) u
    GROUP BY 1, 2, 3
  ), entering AS (
    SELECT field, masked_value, sum(n) AS logins, count(user_id) AS users, min(f) AS f, max(l) AS l
    FROM stored GROUP BY 1, 2 HAVING sum(n) >= 2
  ), pairs_entered AS (
    INSERT INTO login_duplicate_pairs (field, masked_value, user_id, logins)
      SELECT s.field, s.masked_value, s.user_id, s.n FROM stored s JOIN entering e ON e.field = s.field AND e.masked_value = s.masked_value
      ORDER BY 1, 2, 3
  ), values_entered AS (
    INSERT INTO login_duplicates (field, masked_value, logins, users, first_seen, last_seen)
      SELECT field, masked_value, logins, users, f, l FROM entering ORDER BY 1, 2
  )
  SELECT count(*) INTO taken FROM gone;
  RETURN taken;
END
$$;
