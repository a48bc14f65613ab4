-- Refusals beyond a rate are recorded as one row per window carrying how many calls it stands
-- for (see docs/pii.md, Abuse), so a flood costs bounded storage in a table that stays insert-only.
ALTER TABLE audit_log ADD COLUMN calls integer NOT NULL DEFAULT 1 CHECK (calls >= 1);
-- The first call a summary row covers (its last is `at`); NULL on the row of a single call.
ALTER TABLE audit_log ADD COLUMN first_at timestamptz;
-- How input that text cannot hold was stored (escaped, truncated); NULL when stored as sent.
ALTER TABLE audit_log ADD COLUMN note varchar(200);
