-- Indexes for the filters of GET /logins: each one leads with the filtered column and ends
-- with id, so a filtered page is read newest-first straight from the index (keyset paging).
CREATE INDEX user_logins_user_id_idx ON user_logins (user_id, id);
CREATE INDEX user_logins_masked_ip_idx ON user_logins (masked_ip, id);
CREATE INDEX user_logins_masked_device_id_idx ON user_logins (masked_device_id, id);
CREATE INDEX user_logins_create_date_idx ON user_logins (create_date, id);
CREATE INDEX user_logins_app_version_idx ON user_logins (app_version, id);
CREATE INDEX user_logins_app_version_text_idx ON user_logins (app_version_text, id);
-- device_type and locale have few values: the primary key walk with a filter serves them.

-- Who read or erased PII, when, why, and what came of it; refused calls too.
CREATE TABLE audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  action varchar(32) NOT NULL,
  key_name varchar(64),
  target varchar(128),
  reason varchar(500),
  status integer NOT NULL,
  outcome varchar(32) NOT NULL,
  request_id varchar(64)
);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

-- Append-only, enforced by the database rather than by the code that writes it:
-- rows can be inserted and read, never changed or removed (see docs on database roles).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
