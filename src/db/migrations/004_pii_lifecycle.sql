-- Mask key rotation writes the masks under the next key beside the current ones while it
-- backfills, then swaps them in one transaction, so duplicates stay visible throughout.
ALTER TABLE user_logins
  ADD COLUMN next_masked_ip varchar(256),
  ADD COLUMN next_masked_device_id varchar(256),
  ADD COLUMN next_mask_key_id varchar(16);

-- Retention destroys the data keys of whole months.
CREATE INDEX pii_data_keys_period_idx ON pii_data_keys (period);
