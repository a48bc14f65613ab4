import type { Sql, TransactionSql } from 'postgres'
import { pseudonymAddress, IpPrefixKeyError, type IpPrefixer } from './ip-prefix.ts'
import type { RotationLog } from './rotation.ts'
import { loginAad, open, type Vault } from './vault.ts'

export interface IpPrefixRotationReport {
  to: string
  /** rows given a pseudonym under the new key from their originals */
  repseudonymised: number
  /** rows under another key whose originals are gone: their pseudonym is cleared, as erasure would have */
  withoutOriginals: number
  /** true when no row is left under another key */
  done: boolean
}

const PROGRESS = 'ip-prefix-rotation-progress'

interface Progress {
  to: string
  cursor: string
  repseudonymised: number
  withoutOriginals: number
}

interface Row {
  id: string
  message_id: string | null
  masked_ip_prefix: string
  data_key_id: string | null
  ciphertext: Buffer | null
}

/**
 * Moves every ip prefix pseudonym to key `to`, online, resumably and idempotently: in id order,
 * batch by batch, each row under another key gets a pseudonym under `to` computed from its
 * originals in the vault, and the position is saved after each batch (a killed run continues
 * from there). `to` must already be the first IP_PREFIX_KEYS key on every replica, so new
 * logins are written under it meanwhile. A row erased while the run goes is left erased: each
 * update applies only if the row still holds the pseudonym that was read.
 */
export async function rotateIpPrefixKey(
  deps: { sql: Sql; prefixer: IpPrefixer; vault: Vault; log: RotationLog },
  to: string,
  options: { batchSize?: number; stopAfterBatches?: number } = {},
): Promise<IpPrefixRotationReport> {
  const { sql, prefixer, log } = deps
  if (!prefixer.has(to)) throw new IpPrefixKeyError(`IP_PREFIX_KEYS: key ${to} is not configured; add it, first, on every replica`)
  if (prefixer.keyId !== to) {
    throw new IpPrefixKeyError(`IP_PREFIX_KEYS: key ${to} must be the first (active) key, on every replica and here, before rows are moved to it`)
  }
  const batchSize = options.batchSize ?? 500
  let progress = await readProgress(sql)
  if (progress.to !== to) {
    progress = { to, cursor: '0', repseudonymised: 0, withoutOriginals: 0 }
    await writeProgress(sql, progress)
    log.info({ to }, 'ip prefix key rotation started')
  }
  for (let batches = 0; options.stopAfterBatches === undefined || batches < options.stopAfterBatches; batches++) {
    const next = await backfillBatch(deps, progress, batchSize)
    if (next === null) {
      await sql`DELETE FROM service_state WHERE name = ${PROGRESS}`
      const report = { to, repseudonymised: progress.repseudonymised, withoutOriginals: progress.withoutOriginals, done: true }
      log.info(report, 'ip prefix key rotation finished')
      return report
    }
    progress = next
  }
  return { to, repseudonymised: progress.repseudonymised, withoutOriginals: progress.withoutOriginals, done: false }
}

async function readProgress(sql: Sql | TransactionSql): Promise<Progress> {
  const [row] = await sql<{ value: Progress }[]>`SELECT value FROM service_state WHERE name = ${PROGRESS}`
  return row?.value ?? { to: '', cursor: '0', repseudonymised: 0, withoutOriginals: 0 }
}

async function writeProgress(sql: Sql | TransactionSql, progress: Progress): Promise<void> {
  await sql`
    INSERT INTO service_state (name, value) VALUES (${PROGRESS}, ${sql.json(progress as never)})
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`
}

/** Moves the next batch after the saved position; null when there was nothing left. */
async function backfillBatch(deps: { sql: Sql; prefixer: IpPrefixer; vault: Vault; log: RotationLog }, progress: Progress, batchSize: number): Promise<Progress | null> {
  const { sql, prefixer, vault, log } = deps
  const { to } = progress
  const rows = await sql<Row[]>`
    SELECT l.id::text AS id, l.message_id, l.masked_ip_prefix, v.data_key_id::text AS data_key_id, v.ciphertext
    FROM user_logins l LEFT JOIN pii_vault v ON v.login_id = l.id
    WHERE l.id > ${progress.cursor} AND l.masked_ip_prefix IS NOT NULL AND NOT starts_with(l.masked_ip_prefix, ${`${to}:`})
    ORDER BY l.id LIMIT ${batchSize}`
  if (rows.length === 0) return null
  const keys = await vault.unwrapDataKeys(rows.flatMap((r) => (r.data_key_id === null ? [] : [r.data_key_id])))
  let repseudonymised = 0
  let withoutOriginals = 0
  const updates = rows.map((row) => {
    const key = row.data_key_id === null ? undefined : keys.get(row.data_key_id)
    if (key === undefined || row.ciphertext === null || row.message_id === null || row.ciphertext.length === 0) {
      withoutOriginals++
      return { id: row.id, old: row.masked_ip_prefix, pseudonym: null }
    }
    const pii = JSON.parse(open(key, row.ciphertext, loginAad(row.message_id)).toString('utf8')) as { ip: string }
    repseudonymised++
    return { id: row.id, old: row.masked_ip_prefix, pseudonym: prefixer.pseudonym(pii.ip, to) }
  })
  const next: Progress = {
    to,
    cursor: rows.at(-1)?.id ?? progress.cursor,
    repseudonymised: progress.repseudonymised + repseudonymised,
    withoutOriginals: progress.withoutOriginals + withoutOriginals,
  }
  await sql.begin(async (tx) => {
    await tx`
      UPDATE user_logins u SET masked_ip_prefix = v.pseudonym, ip_prefix_net = v.address::inet
      FROM unnest(${tx.array(updates.map((u) => u.id))}::bigint[], ${tx.array(updates.map((u) => u.old))}::text[],
                  ${tx.array(updates.map((u) => u.pseudonym))}::text[], ${tx.array(updates.map((u) => pseudonymAddress(u.pseudonym)))}::text[])
        AS v(id, old, pseudonym, address)
      WHERE u.id = v.id AND u.masked_ip_prefix = v.old`
    await writeProgress(tx, next)
  })
  log.info({ to, cursor: next.cursor, batch: rows.length, repseudonymised: next.repseudonymised, withoutOriginals: next.withoutOriginals }, 'ip prefix key rotation: batch moved')
  return next
}

/** Forgets an ip prefix key's fingerprint so the service starts without it; refused while any row uses it. */
export async function retireIpPrefixKey(sql: Sql, keyId: string, activeKeyId: string | null): Promise<void> {
  if (keyId === activeKeyId) throw new IpPrefixKeyError(`ip prefix key ${keyId} is the active one (first in IP_PREFIX_KEYS)`)
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins WHERE starts_with(masked_ip_prefix, ${`${keyId}:`})`
  if ((row?.n ?? 0) > 0) throw new IpPrefixKeyError(`ip prefix key ${keyId} still pseudonymises ${row?.n} rows; run npm run rotate-keys -- --ip-prefix <new key> first`)
  await sql`DELETE FROM key_fingerprints WHERE kind = 'ip_prefix' AND key_id = ${keyId}`
}
