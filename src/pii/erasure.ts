import type { PendingQuery, Row, Sql, TransactionSql } from 'postgres'

/** A fresh WHERE fragment choosing data keys (a fragment is built per use). */
type KeyFilter = (sql: TransactionSql) => PendingQuery<Row[]>

export interface ErasureReport {
  user_id: string
  data_keys_destroyed: number
  originals_erased: number
  rejected_bodies_erased: number
  rows_deleted: number
}

/**
 * Erases one user's originals for good (crypto-shredding): their data keys are deleted, so
 * every ciphertext under them is unreadable even with the master key, and the ciphertexts
 * themselves are wiped too. By default the masked rows stay (pseudonymous analytics); with
 * `deleteRows` the user's rows go as well. Running it twice is harmless.
 */
export async function eraseUserPii(
  sql: Sql,
  userId: string,
  options: { deleteRows: boolean; audit?: (tx: TransactionSql) => Promise<void> },
): Promise<ErasureReport> {
  return sql.begin(async (tx) => {
    // The audit row commits with the erasure or not at all.
    await options.audit?.(tx)
    const { rejected, vault, keys } = await shred(tx, (q) => q`subject = ${userId}`)
    // Every row of the user, also those whose originals are already gone.
    await tx`UPDATE user_logins SET masked_ip_prefix = NULL, ip_prefix_net = NULL WHERE user_id = ${userId} AND masked_ip_prefix IS NOT NULL`
    const deleted = options.deleteRows ? await tx`DELETE FROM user_logins WHERE user_id = ${userId}` : { count: 0 }
    return { user_id: userId, data_keys_destroyed: keys, originals_erased: vault, rejected_bodies_erased: rejected, rows_deleted: deleted.count }
  })
}

/** Wipes the ciphertexts under the matching data keys, then destroys the keys. */
async function shred(tx: TransactionSql, keyFilter: KeyFilter): Promise<{ rejected: number; vault: number; keys: number }> {
  const doomed = () => tx`SELECT id FROM pii_data_keys WHERE ${keyFilter(tx)}`
  // The prefix-preserving ip pseudonym is reversible by the key holder, so it goes with the originals.
  await tx`
    UPDATE user_logins SET masked_ip_prefix = NULL, ip_prefix_net = NULL
    WHERE masked_ip_prefix IS NOT NULL AND id IN (SELECT login_id FROM pii_vault WHERE data_key_id IN (${doomed()}))`
  const rejected = await tx`
    UPDATE rejected_messages SET body_ciphertext = ''::bytea, data_key_id = NULL WHERE data_key_id IN (${doomed()})`
  const vault = await tx`
    UPDATE pii_vault SET ciphertext = ''::bytea, data_key_id = NULL WHERE data_key_id IN (${doomed()})`
  const keys = await tx`DELETE FROM pii_data_keys WHERE ${keyFilter(tx)}`
  return { rejected: rejected.count, vault: vault.count, keys: keys.count }
}

export interface RetentionReport {
  /** data keys of months that ended before the cutoff */
  data_keys: number
  originals: number
  rejected_bodies: number
  cutoff: string
  dry_run: boolean
}

/**
 * Makes originals older than `days` unrecoverable, a whole month at a time (data keys are per
 * user and month): a month's keys go once the month ended more than `days` ago, so originals
 * live between `days` and `days` + 31 days. The masked rows stay. A dry run only counts.
 */
export async function applyRetention(sql: Sql, options: { days: number; now?: Date; dryRun: boolean }): Promise<RetentionReport> {
  const cutoff = new Date((options.now ?? new Date()).getTime() - options.days * 86_400_000).toISOString().slice(0, 10)
  const expired: KeyFilter = (q) => q`period + interval '1 month' <= ${cutoff}::date`
  if (options.dryRun) {
    return sql.begin(async (tx) => {
      const [row] = await tx<{ keys: number; originals: number; rejected: number }[]>`
        SELECT (SELECT count(*) FROM pii_data_keys WHERE ${expired(tx)})::int AS keys,
               (SELECT count(*) FROM pii_vault WHERE data_key_id IN (SELECT id FROM pii_data_keys WHERE ${expired(tx)}))::int AS originals,
               (SELECT count(*) FROM rejected_messages WHERE data_key_id IN (SELECT id FROM pii_data_keys WHERE ${expired(tx)}))::int AS rejected`
      return { data_keys: row?.keys ?? 0, originals: row?.originals ?? 0, rejected_bodies: row?.rejected ?? 0, cutoff, dry_run: true }
    })
  }
  const done = await sql.begin((tx) => shred(tx, expired))
  return { data_keys: done.keys, originals: done.vault, rejected_bodies: done.rejected, cutoff, dry_run: false }
}
