-- The masked_ip and masked_device_id indexes of user_logins drop their INCLUDE (user_id).
-- Migration 005 added it so that GET /logins/duplicates, which then grouped the whole table,
-- could count distinct users from the indexes alone. Since the summary (migrations 009-012) the
-- report reads no index of user_logins, and the fold reads these indexes only for its two rare
-- cases (a value whose batch both adds and removes logins, a value falling to one login), which
-- then read user_id from the row. They are two of the four indexes on random keys that every
-- insert writes at a random leaf, so their size is what the current month keeps in memory:
-- without user_id each entry is about 40 bytes smaller (the key stays (mask, id), which the
-- keyset pages of GET /logins?masked_ip= and ?masked_device_id= read).
--
-- Rebuilding holds user_logins locked (writes wait, as during every migration at start-up):
-- about 2.5 s per million rows for both on a 2-core machine (24.8 s for 10 million).
SET LOCAL statement_timeout = 0;
DROP INDEX user_logins_masked_ip_idx;
CREATE INDEX user_logins_masked_ip_idx ON user_logins (masked_ip, id);
DROP INDEX user_logins_masked_device_id_idx;
CREATE INDEX user_logins_masked_device_id_idx ON user_logins (masked_device_id, id);
