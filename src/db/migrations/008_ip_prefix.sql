-- Opt-in prefix-preserving ip pseudonyms (IP_PREFIX_KEYS, ipcrypt-pfx): `<key id>:<address>`
-- in masked_ip_prefix, and the address alone as inet in ip_prefix_net so that network filters
-- are btree range scans: `ip_prefix_net >= '19.214.210.0' AND ip_prefix_net <= '19.214.210.255'`
-- (for a literal, PostgreSQL also turns `<<= '19.214.210.0/24'` into that range). NULL when the option is off, when the
-- ip is not an address, and once erasure or retention removed the originals (the pseudonym is
-- reversible by the key holder, so it goes with them). Nothing to backfill: off until configured.
ALTER TABLE user_logins
  ADD COLUMN masked_ip_prefix text,
  ADD COLUMN ip_prefix_net inet;

-- Partial: rows without a pseudonym (every row while the option is off) cost nothing in it.
CREATE INDEX user_logins_ip_prefix_net_idx ON user_logins (ip_prefix_net) INCLUDE (user_id) WHERE ip_prefix_net IS NOT NULL;
