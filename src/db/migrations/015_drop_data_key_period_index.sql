-- pii_data_keys loses its index on period (migration 004). No statement reads it: retention
-- compares `period + interval '1 month'`, which an index on period does not serve. But the
-- vault's lookup of a batch's keys by (subject, period) could choose it while the table had no
-- statistics (a new database, before autovacuum's first ANALYZE): every key of the month
-- matches it, so each lookup read all of them, 1.2 billion index fetches in a fresh
-- database's first 100,000 messages, which slowed from 2,100 to 840 a second. The unique
-- (subject, period) index is the only one left for that lookup, and one fewer index is written
-- for each new key.
DROP INDEX pii_data_keys_period_idx;
